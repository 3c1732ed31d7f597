# SPDX-License-Identifier: Apache-2.0
"""The one way the tests find what they test: the build directory meson runs them from.

meson sets KVEGRESS_BUILD_DIR (tests/meson.build, kvtest_env) to its build root; binary("kvnetd/kvnetd") is
that build's kvnetd. Nothing searches other build folders, so a stale build is never picked up. Run a test by
hand with KVEGRESS_BUILD_DIR=build-sanitize PYTHONPATH=tests/lib python3 tests/....py (or set_build_dir()).
"""
import os

ENV = "KVEGRESS_BUILD_DIR"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BuildError(RuntimeError):
    pass


def set_build_dir(path):
    """For a test's --build-dir option: the same as exporting KVEGRESS_BUILD_DIR."""
    os.environ[ENV] = os.path.abspath(path)


def build_dir():
    d = os.environ.get(ENV)
    if not d:
        raise BuildError("%s is not set: run the test with `meson test -C BUILD`, or export %s=BUILD "
                         "(the meson build directory whose binaries are under test)" % (ENV, ENV))
    if not os.path.isdir(d):
        raise BuildError("%s=%s is not a directory" % (ENV, d))
    return os.path.abspath(d)


def binary(relpath):
    """The executable relpath (e.g. "kvnetd/kvnetd", "tests/kube/kube-informer-check") of the build under test;
    raises BuildError, naming the path, when it is not there."""
    p = os.path.join(build_dir(), relpath)
    if not os.path.isfile(p) or not os.access(p, os.X_OK):
        raise BuildError("%s not built: %s is missing (%s=%s)" % (relpath, p, ENV, build_dir()))
    return p


def artifact(relpath):
    """A file (not necessarily executable) of the build under test, e.g. a shared module."""
    p = os.path.join(build_dir(), relpath)
    if not os.path.exists(p):
        raise BuildError("%s not built: %s is missing (%s=%s)" % (relpath, p, ENV, build_dir()))
    return p
