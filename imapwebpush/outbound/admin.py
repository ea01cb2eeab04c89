"""The ``dkim`` and ``queue`` groups of the admin command.

``imapwebpush dkim generate DOMAIN`` makes the signing key and prints the TXT
record to publish; ``imapwebpush queue list|retry|delete`` shows and steers
the outbound queue. They change files only; a running server picks up a
retry or a delete within a minute (it rereads changed queue files), and a new
DKIM key at its next start.
"""

import time
from datetime import datetime, timezone

from imapwebpush import datadir
from imapwebpush.outbound import dkim
from imapwebpush.outbound.queue import DiskQueue, QueueFileError
from imapwebpush.webpush.admin import AdminError, AdminUsageError


def _queue(ctx):
    try:
        return DiskQueue(datadir.queue(ctx.data_dir()))
    except QueueFileError as e:
        raise AdminError(str(e))


def _when(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def queue_list(args, ctx):
    entries = _queue(ctx).entries()
    for entry in entries:
        ctx.print("%s %s <%s> %d octets" % (entry.id, _when(entry.created), entry.sender, entry.size))
        for r in entry.recipients:
            line = "  %s %s attempts=%d" % (r.address, r.state, r.attempts)
            if r.state == "pending":
                line += " next=%s" % (_when(r.next_attempt),)
            if r.answer:
                line += " last: %s" % (r.answer,)
            ctx.print(line)
    if not entries:
        ctx.print("the queue is empty")


def _selected(queue, ids):
    if not ids:
        return queue.entries()
    chosen = []
    for queue_id in ids:
        try:
            chosen.append(queue.get(queue_id))
        except KeyError:
            raise AdminError("no such queue id: %s" % (queue_id,))
    return chosen


def queue_retry(args, ctx):
    queue = _queue(ctx)
    now = time.time()
    count = 0
    for entry in _selected(queue, args.ids):
        for r in entry.pending():
            r.next_attempt = now
            count += 1
        queue.save(entry)
    ctx.print("%d recipient(s) due now (a running server tries them within a minute)" % (count,))


def queue_delete(args, ctx):
    if not args.ids and not args.all:
        raise AdminUsageError("name the queue ids to delete, or give --all")
    queue = _queue(ctx)
    entries = _selected(queue, args.ids)
    for entry in entries:
        queue.remove(entry.id)
    ctx.print("deleted %d message(s) from the queue (no bounce is sent)" % (len(entries),))


def register_queue(subparsers):
    group = subparsers.add_parser("queue", help="list, retry or delete outbound mail waiting in the queue")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every queued message and its recipients' state").set_defaults(
        func=queue_list)
    retry = actions.add_parser("retry", help="make pending recipients due now (all, or of the ids given)")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.set_defaults(func=queue_retry)
    delete = actions.add_parser("delete", help="drop queued messages without a bounce")
    delete.add_argument("ids", nargs="*", metavar="ID")
    delete.add_argument("--all", action="store_true", help="delete every queued message")
    delete.set_defaults(func=queue_delete)


def dkim_generate(args, ctx):
    try:
        name, value = dkim.generate_key(
            datadir.dkim(ctx.data_dir()), args.domain, args.selector, replace=args.replace)
    except dkim.DKIMKeyError as e:
        raise AdminError(str(e))
    ctx.print("Publish this TXT record, then restart the server:")
    ctx.print("%s. IN TXT \"%s\"" % (name, value))


def dkim_show(args, ctx):
    try:
        keys = dkim.load_keys(datadir.dkim(ctx.data_dir()))
    except dkim.DKIMKeyError as e:
        raise AdminError(str(e))
    for domain, (selector, _, public) in sorted(keys.items()):
        name, value = dkim.dns_record(domain, selector, public)
        ctx.print("%s. IN TXT \"%s\"" % (name, value))
    if not keys:
        ctx.print("no DKIM key (make one with 'imapwebpush dkim generate DOMAIN')")


def register_dkim(subparsers):
    group = subparsers.add_parser("dkim", help="make and show the DKIM keys that sign outbound mail")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser("generate", help="make a key for DOMAIN and print its DNS TXT record")
    generate.add_argument("domain")
    generate.add_argument("--selector", default=dkim.DEFAULT_SELECTOR,
                          help="the DKIM selector (default: %(default)s)")
    generate.add_argument("--replace", action="store_true", help="replace the domain's existing key")
    generate.set_defaults(func=dkim_generate)
    actions.add_parser("show", help="print the TXT record of every key").set_defaults(func=dkim_show)
