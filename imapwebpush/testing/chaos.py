"""Trouble on purpose: a push service that sometimes fails, is slow, or hangs up.

A client (or a server under test) must survive a push service that answers
404/410 (subscription gone), 413 (too large), 429/503 with ``Retry-After``
(slow down), 507 (no room), takes its time, or drops the connection.
``PushService.chaos = Chaos(...)`` makes the loopback push service do so at
random, for every push that has no scripted answer (``respond()`` wins).
A ``seed`` makes a run repeatable.
"""

import random

from imapwebpush.testing.pushservice import Answer

STATUSES = (404, 410, 413, 429, 503, 507)
SLOW_DOWN = (429, 503)  # these carry Retry-After


class Chaos:
    """Per push: with ``probability`` one of ``statuses``; else with ``drop`` a hang-up.

    ``delay`` (seconds) is added to every answer, good or bad. ``retry_after``
    is the ``Retry-After`` value of 429 and 503 answers.
    """

    def __init__(self, probability=0.0, statuses=STATUSES, retry_after=1, delay=0.0,
                 drop=0.0, seed=None):
        for name, p in (("probability", probability), ("drop", drop)):
            if not 0.0 <= p <= 1.0:
                raise ValueError("%s must be between 0 and 1, not %r" % (name, p))
        statuses = tuple(int(s) for s in statuses)
        bad = [s for s in statuses if not 400 <= s <= 599]
        if bad or (probability and not statuses):
            raise ValueError("statuses must be HTTP error codes (4xx, 5xx), not %r" % (bad,))
        if delay < 0 or retry_after < 0:
            raise ValueError("delay and retry_after must not be negative")
        self.probability = probability
        self.statuses = statuses
        self.retry_after = retry_after
        self.delay = delay
        self.drop = drop
        self.seed = seed
        self._random = random.Random(seed)

    def answer(self, default):
        """The answer to one push: a chaotic one, or ``default`` (delayed by ``delay``)."""
        roll = self._random.random()
        if roll < self.probability:
            status = self._random.choice(self.statuses)
            if status in SLOW_DOWN:
                answer = Answer.retry_after(str(self.retry_after), status)
            elif status in (404, 410):
                answer = Answer.gone(status)
            else:
                answer = Answer(status, body=b"chaos")
        elif roll < self.probability + (1 - self.probability) * self.drop:
            answer = Answer.garbage(b"")  # closes the connection without a word
        else:
            answer = Answer(default.status, default.headers, default.body, default.delay,
                            default.kind)
        answer.delay += self.delay
        return answer

    def describe(self):
        return {"probability": self.probability, "statuses": list(self.statuses),
                "retry_after": self.retry_after, "delay": self.delay, "drop": self.drop,
                "seed": self.seed}
