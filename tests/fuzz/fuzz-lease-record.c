/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: kvelectd's Lease record (kvelectd/lease-record.c): the JSON
 * the election reads from the apiserver, the bodies it writes back, and its
 * MicroTime formatting and name checks.
 *
 * Input: byte 0 picks the mode (mod 3): 0-1 a Lease object as JSON, 2 a name
 * and a time value. Invariants: what lease_record_from_json() reads agrees
 * with kube_lease_parse() where both accept the object; a body built from a
 * record (create, and PUT over the object received) reads back as the same
 * record; the two MicroTime formatters agree and round-trip; the Lease name
 * checks are at least as strict as shared/netaddr's. */
#include <errno.h>

#include "fuzz-util.h"
#include "kube-objects.h"
#include "lease-record.h"
#include "netaddr.h"

static void check_body(json_t *base, const LeaseRecord *rec)
{
        _cleanup_(lease_record_done) LeaseRecord back = {};
        _cleanup_free_ char *rv = NULL;
        json_t *body = NULL;

        if (lease_body_new(base, "kube-system", "kubevip-web", rec, "4242", &body) < 0)
                return;
        fuzz_assert(json_is_object(body));
        fuzz_assert(lease_record_from_json(body, &back, &rv) == 0);
        fuzz_assert(lease_record_equal(rec, &back));
        fuzz_assert(streq(json_string_value(json_object_get(body, "kind")), "Lease"));
        /* PUT carries the resourceVersion it was given; create carries none. */
        fuzz_assert(streq(rv, base ? "4242" : ""));
        {
                /* And it is what the apiserver's typed view reads too. */
                _cleanup_(kube_lease_freep) KubeLease *l = NULL;
                KubeParseError err = {};
                uint64_t t;
                bool times_ok =
                        (isempty(rec->acquire_time) || kube_microtime_parse(rec->acquire_time, &t) == 0) &&
                        (isempty(rec->renew_time) || kube_microtime_parse(rec->renew_time, &t) == 0);
                if (times_ok && kube_lease_parse(body, &l, &err) == 0) {
                        fuzz_assert(streq_ptr(l->holder_identity, rec->holder));
                        fuzz_assert(l->lease_duration_seconds == rec->duration_sec);
                        fuzz_assert(l->lease_transitions == rec->transitions);
                }
        }
        json_decref(body);
}

static void run_json(const uint8_t *data, size_t size)
{
        _cleanup_(lease_record_done) LeaseRecord rec = {};
        _cleanup_free_ char *rv = NULL;
        json_error_t jerr;
        json_t *j;
        int r;

        j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
        if (!j)
                return;
        r = lease_record_from_json(j, &rec, &rv);
        if (r < 0) {
                fuzz_assert(r == -EBADMSG || r == -ENOMEM);
                json_decref(j);
                return;
        }
        fuzz_assert(rec.holder && rec.acquire_time && rec.renew_time && rv);

        /* The typed view, where it accepts the object, reads the same. */
        {
                _cleanup_(kube_lease_freep) KubeLease *l = NULL;
                KubeParseError err = {};
                if (kube_lease_parse(j, &l, &err) == 0) {
                        fuzz_assert(streq(rec.holder, l->holder_identity ?: ""));
                        fuzz_assert(rec.duration_sec == l->lease_duration_seconds);
                        fuzz_assert(rec.transitions == l->lease_transitions);
                        fuzz_assert(streq(rec.acquire_time, l->acquire_time ?: ""));
                        fuzz_assert(streq(rec.renew_time, l->renew_time ?: ""));
                        fuzz_assert(streq(rv, l->meta.resource_version ?: ""));
                }
        }

        /* Copies compare equal. */
        {
                _cleanup_(lease_record_done) LeaseRecord copy = {};
                if (lease_record_copy(&copy, &rec) == 0)
                        fuzz_assert(lease_record_equal(&copy, &rec));
        }

        check_body(NULL, &rec);
        if (json_is_object(j))
                check_body(j, &rec);
        json_decref(j);
}

static void run_misc(const uint8_t *data, size_t size)
{
        char b[32];
        uint64_t t = 0, back;

        memcpy(&t, data, MIN(size, sizeof(t)));
        /* What kvelectd writes into Leases parses back to the same time. */
        if (kube_microtime_format(t, b) == 0)
                fuzz_assert(kube_microtime_parse(b, &back) == 0 && back == t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 256 * 1024)
                return 0;
        if (data[0] % 3 == 2)
                run_misc(data + 1, size - 1);
        else
                run_json(data + 1, size - 1);
        return 0;
}
