/* SPDX-License-Identifier: Apache-2.0 */
#include "lease-record.h"

#include <stdio.h>
#include <time.h>

void lease_record_done(LeaseRecord *r)
{
        if (!r)
                return;
        r->holder = mfree(r->holder);
        r->acquire_time = mfree(r->acquire_time);
        r->renew_time = mfree(r->renew_time);
        r->duration_sec = 0;
        r->transitions = 0;
}

int lease_record_copy(LeaseRecord *dst, const LeaseRecord *src)
{
        LeaseRecord n = {
                .holder = strdup(src->holder ? src->holder : ""),
                .duration_sec = src->duration_sec,
                .acquire_time = strdup(src->acquire_time ? src->acquire_time : ""),
                .renew_time = strdup(src->renew_time ? src->renew_time : ""),
                .transitions = src->transitions,
        };

        if (!n.holder || !n.acquire_time || !n.renew_time) {
                lease_record_done(&n);
                return -ENOMEM;
        }
        lease_record_done(dst);
        *dst = n;
        return 0;
}

bool lease_record_equal(const LeaseRecord *a, const LeaseRecord *b)
{
        return streq_ptr(a->holder, b->holder) && a->duration_sec == b->duration_sec &&
               streq_ptr(a->acquire_time, b->acquire_time) && streq_ptr(a->renew_time, b->renew_time) &&
               a->transitions == b->transitions;
}

static int get_string(json_t *obj, const char *key, char **ret)
{
        json_t *v = obj ? json_object_get(obj, key) : NULL;
        char *s;

        if (v && !json_is_null(v) && !json_is_string(v))
                return -EBADMSG;
        s = strdup(json_is_string(v) ? json_string_value(v) : "");
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int get_int32(json_t *obj, const char *key, int32_t *ret)
{
        json_t *v = obj ? json_object_get(obj, key) : NULL;
        json_int_t x;

        if (!v || json_is_null(v)) {
                *ret = 0;
                return 0;
        }
        if (!json_is_integer(v))
                return -EBADMSG;
        x = json_integer_value(v);
        if (x < INT32_MIN || x > INT32_MAX)
                return -EBADMSG;
        *ret = (int32_t)x;
        return 0;
}

int lease_record_from_json(json_t *lease, LeaseRecord *ret, char **ret_resource_version)
{
        _cleanup_(lease_record_done) LeaseRecord rec = {};
        _cleanup_free_ char *rv = NULL;
        json_t *spec, *meta;
        int r;

        if (!json_is_object(lease))
                return -EBADMSG;
        spec = json_object_get(lease, "spec");
        if (spec && !json_is_null(spec) && !json_is_object(spec))
                return -EBADMSG;
        if (json_is_null(spec))
                spec = NULL;
        meta = json_object_get(lease, "metadata");
        if (meta && !json_is_object(meta))
                return -EBADMSG;

        r = get_string(spec, "holderIdentity", &rec.holder);
        if (r < 0)
                return r;
        r = get_int32(spec, "leaseDurationSeconds", &rec.duration_sec);
        if (r < 0)
                return r;
        r = get_string(spec, "acquireTime", &rec.acquire_time);
        if (r < 0)
                return r;
        r = get_string(spec, "renewTime", &rec.renew_time);
        if (r < 0)
                return r;
        r = get_int32(spec, "leaseTransitions", &rec.transitions);
        if (r < 0)
                return r;
        r = get_string(meta, "resourceVersion", &rv);
        if (r < 0)
                return r;

        *ret = rec;
        rec = (LeaseRecord){};
        if (ret_resource_version)
                *ret_resource_version = TAKE_PTR(rv);
        return 0;
}

static int set_spec(json_t *spec, const LeaseRecord *rec)
{
        int r = 0;

        r |= json_object_set_new(spec, "holderIdentity", json_string(rec->holder ? rec->holder : ""));
        r |= json_object_set_new(spec, "leaseDurationSeconds", json_integer(rec->duration_sec));
        r |= json_object_set_new(spec, "acquireTime",
                                 json_string(rec->acquire_time ? rec->acquire_time : ""));
        r |= json_object_set_new(spec, "renewTime", json_string(rec->renew_time ? rec->renew_time : ""));
        r |= json_object_set_new(spec, "leaseTransitions", json_integer(rec->transitions));
        return r < 0 ? -ENOMEM : 0;
}

int lease_body_new(json_t *base, const char *namespace, const char *name, const LeaseRecord *rec,
                   const char *resource_version, json_t **ret)
{
        json_t *body, *meta, *spec;

        if (base) {
                /* PUT replaces the whole object: start from what the server
                 * holds so labels, annotations and other spec fields
                 * (strategy, preferredHolder) survive. */
                body = json_deep_copy(base);
                if (!body)
                        return -ENOMEM;
                meta = json_object_get(body, "metadata");
                if (!json_is_object(meta)) {
                        meta = json_object();
                        if (!meta || json_object_set_new(body, "metadata", meta) < 0)
                                goto oom;
                }
                /* The server owns these; sending them back is noise. */
                (void)json_object_del(meta, "managedFields");
                if (json_object_set_new(meta, "resourceVersion", json_string(resource_version ?: "")) < 0)
                        goto oom;
                if (json_object_set_new(meta, "name", json_string(name)) < 0 ||
                    json_object_set_new(meta, "namespace", json_string(namespace)) < 0)
                        goto oom;
                spec = json_object_get(body, "spec");
                if (!json_is_object(spec)) {
                        spec = json_object();
                        if (!spec || json_object_set_new(body, "spec", spec) < 0)
                                goto oom;
                }
        } else {
                body = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{}}", "kind", "Lease", "apiVersion",
                                 "coordination.k8s.io/v1", "metadata", "name", name, "namespace", namespace,
                                 "spec");
                if (!body)
                        return -ENOMEM;
                spec = json_object_get(body, "spec");
        }
        if (json_object_set_new(body, "kind", json_string("Lease")) < 0 ||
            json_object_set_new(body, "apiVersion", json_string("coordination.k8s.io/v1")) < 0)
                goto oom;
        if (set_spec(spec, rec) < 0)
                goto oom;
        *ret = body;
        return 0;
oom:
        json_decref(body);
        return -ENOMEM;
}
