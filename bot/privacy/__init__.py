"""Privacy: what Teller keeps about customers, and for how long.

- :mod:`bot.privacy.redaction`: personal data found in free text and replaced by typed placeholders
  before anything is stored, logged or posted to operators.
- :mod:`bot.privacy.retention` and :mod:`bot.privacy.erasure`: old messages removed on a schedule;
  one customer's data erased on request, with a receipt; both recorded in the audit log.
  :mod:`bot.privacy.purge` removes messages with everything that hangs off them, for both, and
  :mod:`bot.privacy.briefs` their quotes in positioning briefs (rows and files).
- :mod:`bot.privacy.access`: everything stored about one customer handed out on request (the right
  of access), recorded in the audit log.
"""
