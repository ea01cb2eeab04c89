"""Outbound mail: the queue, routing (MX or smarthost), the SMTP client, DSNs, DKIM."""
