# SPDX-License-Identifier: Apache-2.0
"""call_as(): runs a Python function as another user, in a forked child.

The child inherits the modules already imported, so it reads no file of
the checkout: a test of "a peer with uid X is refused" then fails or passes
on the peer's credentials alone, wherever the checkout lives (a clone in a
0700 folder once made a setpriv'd "python3 -c 'import kvnet'" fail at the
import, and a test that only checked for an error passed for that reason)."""

import grp
import os
import pickle
import pwd
import select
import traceback


def call_as(user, fn, group=None, init_groups=True, timeout=30, groups=None):
    """(True, value) if fn() returned, (False, "ExceptionName: text") if it raised.

    group defaults to the user's primary group; init_groups adds the user's
    supplementary groups (as setpriv --init-groups), else there are none;
    groups (a list of group names) gives exactly these (as setpriv --groups)."""
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    extra = [grp.getgrnam(g).gr_gid for g in groups] if groups is not None else None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            try:
                if extra is not None:
                    os.setgroups(extra)
                elif init_groups:
                    os.initgroups(user, gid)
                else:
                    os.setgroups([])
                os.setgid(gid)
                os.setuid(pw.pw_uid)
                out = (True, fn())
            except BaseException as e:  # noqa: B036 - reported to the parent
                out = (False, f"{type(e).__name__}: {e}")
            data = pickle.dumps(out)
        except BaseException:
            data = pickle.dumps((False, traceback.format_exc()))
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                raise TimeoutError(f"call_as({user!r}) took longer than {timeout} s")
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"call_as({user!r}): the child died without an answer")
    return pickle.loads(b"".join(chunks))
