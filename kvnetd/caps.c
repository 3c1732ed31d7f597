/* SPDX-License-Identifier: Apache-2.0 */
#include "caps.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "log.h"

static const cap_value_t keep[] = {CAP_NET_ADMIN, CAP_NET_RAW};

static bool kept(cap_value_t v)
{
        for (size_t i = 0; i < ELEMENTSOF(keep); i++)
                if (keep[i] == v)
                        return true;
        return false;
}

static void cap_freep(cap_t *c)
{
        if (*c)
                (void)cap_free(*c);
}

/* True when the permitted set holds nothing beyond the kept capabilities and
 * every permitted one is effective: then there is nothing to drop. Under
 * systemd (AmbientCapabilities=) this is how we start, and the unit forbids
 * capset(2) (SystemCallFilter=~@privileged), so we must not call it. */
static bool already_minimal(void)
{
        _cleanup_(cap_freep) cap_t cur = cap_get_proc();
        cap_flag_value_t p, e;

        if (!cur)
                return false;
        for (cap_value_t i = 0; i <= CAP_LAST_CAP; i++) {
                if (!CAP_IS_SUPPORTED(i))
                        continue;
                if (cap_get_flag(cur, i, CAP_PERMITTED, &p) < 0 ||
                    cap_get_flag(cur, i, CAP_EFFECTIVE, &e) < 0)
                        return false;
                if (p == CAP_SET && (!kept(i) || e != CAP_SET))
                        return false;
        }
        return true;
}

static int set_only_kept(void)
{
        _cleanup_(cap_freep) cap_t caps = NULL;

        if (already_minimal())
                return 0;
        caps = cap_init();
        if (!caps)
                return -ENOMEM;
        if (cap_set_flag(caps, CAP_PERMITTED, ELEMENTSOF(keep), keep, CAP_SET) < 0 ||
            cap_set_flag(caps, CAP_EFFECTIVE, ELEMENTSOF(keep), keep, CAP_SET) < 0)
                return -errno;
        if (cap_set_proc(caps) < 0)
                return -errno;
        return 0;
}

static int switch_user(const char *user)
{
        struct passwd *pw;

        errno = 0;
        pw = getpwnam(user);
        if (!pw)
                return errno > 0 ? -errno : -ESRCH;
        /* Keep the permitted set across setuid(); set_only_kept() then
         * trims it to the two we need. */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                return -errno;
        if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
                return -errno;
        (void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
        return 0;
}

int caps_setup(const Config *c)
{
        _cleanup_(cap_freep) cap_t now = NULL;
        cap_flag_value_t v;
        bool extra = false;
        int r;

        if (!c->allow_extra_caps) {
                /* The bounding set can only shrink, and only with
                 * CAP_SETPCAP: when we have it (started as root), nothing
                 * we exec could ever regain more. */
                if (CAP_IS_SUPPORTED(CAP_SETPCAP)) {
                        _cleanup_(cap_freep) cap_t cur = cap_get_proc();
                        if (cur && cap_get_flag(cur, CAP_SETPCAP, CAP_EFFECTIVE, &v) == 0 && v == CAP_SET)
                                for (cap_value_t i = 0; i <= CAP_LAST_CAP; i++)
                                        if (!kept(i) && CAP_IS_SUPPORTED(i))
                                                (void)cap_drop_bound(i);
                }
                if (c->user && geteuid() == 0) {
                        r = switch_user(c->user);
                        if (r < 0)
                                return log_error_errno(r, "--user=%s: cannot switch to this user: %m",
                                                       c->user);
                }
                r = set_only_kept();
                if (r < 0)
                        return log_error_errno(r, "cannot drop capabilities: %m");
                /* We never exec; nothing should inherit anything. */
                (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
                (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        }

        now = cap_get_proc();
        if (!now)
                return log_error_errno(errno, "cannot read our capabilities: %m");
        if (cap_get_flag(now, CAP_NET_ADMIN, CAP_EFFECTIVE, &v) < 0 || v != CAP_SET)
                return log_error_errno(EPERM, "CAP_NET_ADMIN is required (addresses, nftables, conntrack)");
        if (cap_get_flag(now, CAP_NET_RAW, CAP_EFFECTIVE, &v) < 0 || v != CAP_SET)
                log_warning("CAP_NET_RAW is missing: gratuitous ARP and Neighbour Advertisements will fail");
        for (cap_value_t i = 0; i <= CAP_LAST_CAP; i++) {
                cap_flag_value_t p = CAP_CLEAR;
                if (kept(i) || !CAP_IS_SUPPORTED(i))
                        continue;
                if (cap_get_flag(now, i, CAP_PERMITTED, &p) == 0 && p == CAP_SET) {
                        char *name = cap_to_name(i);
                        log_full(c->allow_extra_caps ? LOG_WARNING : LOG_ERR,
                                 "running with capability %s beyond CAP_NET_ADMIN and CAP_NET_RAW%s",
                                 name ? name : "?", c->allow_extra_caps ? " (--allow-extra-caps)" : "");
                        (void)cap_free(name);
                        extra = true;
                }
        }
        if (extra && !c->allow_extra_caps)
                return log_error_errno(EPERM,
                                       "refusing to run with extra capabilities (see --allow-extra-caps)");
        return 0;
}
