"""The web console (``mailtriage console``): compliance reads, lints, approves and rejects templates; team leads
watch what waits, the report and recent decisions. Server-rendered pages (Starlette, Jinja2), no scripts; local
accounts with Argon2 passwords or a trusted proxy's header; server-side sessions, CSRF tokens, a login limit, and
every login and approval in the audit log. Nothing in it sends mail or changes a mailbox."""
