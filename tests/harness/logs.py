"""What the server logged while a test ran, for tests that assert it logged no error."""

from twisted.logger import globalLogPublisher


class LogWatch:
    """Every twisted.logger event emitted while a test runs (observer removed at cleanup)."""

    def __init__(self, testcase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def failures(self):
        """Events that carry a traceback (log.failure)."""
        return [e for e in self.events if "log_failure" in e]

    def errors(self):
        """Events at level error or critical (log.failure's included)."""
        return [e for e in self.events if getattr(e.get("log_level"), "name", None) in ("error", "critical")]

    @property
    def bad(self):
        """Failures and errors: what a hostile client must never cause."""
        errors = self.errors()
        return [e for e in self.events if "log_failure" in e or any(e is x for x in errors)]
