"""A private Dovecot for benchmarks: own config, folders and ports; no system service.

Why its own everything: the benchmark must not depend on (or disturb) a system
Dovecot. ``PrivateDovecot(root)`` writes ``root/dovecot.conf`` (base_dir,
state_dir, log file, a passwd-file passdb/userdb, maildir under ``root/mail``,
IMAP and LMTP on 127.0.0.1 free ports, ssl=no, plaintext auth allowed) and
runs ``dovecot -F -c conf`` as a child process; ``stop()`` ends it.

With ``push_url`` it also loads Dovecot's own push_notification plugin with
the OX driver for LMTP delivery (one unencrypted HTTP PUT of a JSON summary per
new INBOX message to ``push_url``), with IMAP METADATA kept in a file dict in
the user's home; the driver only notifies users that have the METADATA key
``HTTP_NOTIFY_KEY``, which ``set_http_notify()`` sets over IMAP.

Mail is owned by an unprivileged uid (``nobody``) since Dovecot refuses mail
access as root.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time


def ensure_installed():
    """True when ``dovecot`` is there (installing dovecot-imapd and dovecot-lmtpd if needed)."""
    if shutil.which("dovecot") and os.path.exists("/usr/lib/dovecot/lmtp"):
        return True
    if not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "dovecot-imapd", "dovecot-lmtpd"]
    quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if subprocess.run(cmd, **quiet).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        subprocess.run(cmd, **quiet)
    return shutil.which("dovecot") is not None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
protocol lmtp {{
  postmaster_address = postmaster@localhost
{lmtp_extra}}}
{extra}"""

# The OX driver reads this METADATA key (RFC 5464) of the user; no key, no PUT.
HTTP_NOTIFY_KEY = "/private/vendor/vendor.dovecot/http-notify"

PUSH_CONF = """\
mail_attribute_dict = file:%h/dovecot-attributes
protocol imap {{
  imap_metadata = yes
}}
plugin {{
  push_notification_driver = ox:url={url}
}}
"""
PUSH_LMTP = "  mail_plugins = $mail_plugins notify push_notification\n"


class PrivateDovecot:
    def __init__(self, root, user, password, mail_user="nobody", push_url=None):
        self.root = root
        self.push_url = push_url
        self.user = user
        self.password = password
        pw = pwd.getpwnam(mail_user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.imap_port = free_port()
        self.lmtp_port = free_port()
        self.conf = os.path.join(root, "dovecot.conf")
        self.proc = None

    def maildir(self):
        """The user's Maildir (fill it before ``start``; ``start`` fixes ownership)."""
        path = os.path.join(self.root, "mail", self.user)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        return path

    def start(self, timeout=30):
        os.chmod(self.root, 0o755)
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        home = os.path.join(self.root, "home", self.user)
        os.makedirs(home, exist_ok=True)
        self.maildir()
        for top in (os.path.join(self.root, "mail"), os.path.join(self.root, "home")):
            for dirpath, dirnames, filenames in os.walk(top):
                os.chown(dirpath, self.uid, self.gid)
                for f in filenames:
                    os.chown(os.path.join(dirpath, f), self.uid, self.gid)
        with open(os.path.join(self.root, "passwd"), "w") as f:
            f.write("%s:{PLAIN}%s:%d:%d::%s\n" % (self.user, self.password, self.uid, self.gid, home))
        with open(self.conf, "w") as f:
            f.write(
                CONF.format(
                    root=self.root, uid=self.uid, imap_port=self.imap_port, lmtp_port=self.lmtp_port,
                    lmtp_extra=PUSH_LMTP if self.push_url else "",
                    extra=PUSH_CONF.format(url=self.push_url) if self.push_url else "",
                )
            )
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", self.conf],
            stdout=open(os.path.join(self.root, "dovecot.stdout"), "wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if all(self._listening(p) for p in (self.imap_port, self.lmtp_port)):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not start; see %s/dovecot.log and dovecot.stdout" % self.root)

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            return False

    def set_http_notify(self, value=None, timeout=10):
        """Set the OX driver's METADATA key for the user (``user=<name>``) with SETMETADATA."""
        value = value or "user=%s" % self.user
        sock = socket.create_connection(("127.0.0.1", self.imap_port), timeout)
        f = sock.makefile("rb")
        try:
            f.readline()  # greeting
            for tag, line in (
                (b"a1", b'LOGIN "%s" "%s"' % (self.user.encode(), self.password.encode())),
                (b"a2", b'SETMETADATA "" (%s "%s")' % (HTTP_NOTIFY_KEY.encode(), value.encode())),
                (b"a3", b"LOGOUT"),
            ):
                sock.sendall(tag + b" " + line + b"\r\n")
                while True:
                    answer = f.readline()
                    if not answer:
                        raise RuntimeError("dovecot closed the IMAP connection")
                    if answer.startswith(tag + b" "):
                        break
                if not answer.startswith(tag + b" OK"):
                    raise RuntimeError("dovecot: %r" % answer)
        finally:
            f.close()
            sock.close()

    def version(self):
        try:
            return subprocess.run(["dovecot", "--version"], stdout=subprocess.PIPE, timeout=10).stdout.decode().split()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
