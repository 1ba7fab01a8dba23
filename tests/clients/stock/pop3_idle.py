"""POP3 sessions must end after [limits] idle_timeout_secs of silence, whichever executor
serves them: reproduces the handed-off session that never times out (and keeps its maildrop
locked). Expects a server started with idle_timeout_secs = 2.

    pop3_idle.py TRIES      -> exit 0 if every logged-in session was closed after 4 s idle"""
import os
import poplib
import ssl
import sys
import time

tries = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
survivors = 0
for i in range(tries):
    p = poplib.POP3_SSL("127.0.0.1", int(os.environ["RP_POP3S"]), context=ctx, timeout=30)
    p.user("alice@example.org")
    p.pass_("alice-pw")
    time.sleep(4)
    try:
        p.stat()
        survivors += 1
        print(f"session {i}: still open after 4 s idle (idle_timeout_secs = 2)")
        p.quit()
    except (poplib.error_proto, OSError, EOFError) as e:
        print(f"session {i}: closed ({type(e).__name__})")
    # The maildrop must be free again for the next try.
    deadline = time.time() + 10
    while True:
        q = poplib.POP3_SSL("127.0.0.1", int(os.environ["RP_POP3S"]), context=ctx, timeout=30)
        q.user("alice@example.org")
        try:
            q.pass_("alice-pw")
            q.quit()
            break
        except poplib.error_proto as e:
            if time.time() > deadline:
                sys.exit(f"maildrop still locked 10 s after session {i}: {e}")
            time.sleep(0.2)
sys.exit(1 if survivors else 0)
