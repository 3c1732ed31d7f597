/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the typed views of API objects (shared/kube/kube-objects.c)
 * and the Kubernetes time parsers (kube-time.c).
 *
 * Input: byte 0 picks the parser (mod 10), the rest is a JSON document (or
 * the time text). Invariants: success gives an object whose every string is
 * readable and whose counts match its arrays; failure gives -EBADMSG with a
 * non-empty message (or -ENOMEM); a parsed time formats and parses back to
 * the same instant. */
#include <errno.h>

#include "fuzz-util.h"
#include "kube-objects.h"

static size_t touch(const char *s)
{
        /* strlen() makes ASan check every byte up to the NUL. */
        return s ? strlen(s) + 1 : 0;
}

static size_t touch_strv(char **l)
{
        size_t n = 0;

        for (char **i = l; i && *i; i++)
                n += touch(*i);
        return n;
}

static size_t touch_map(const KubeStringMap *m)
{
        size_t n = 0;

        fuzz_assert(m->n == 0 || (m->keys && m->values));
        for (size_t i = 0; i < m->n; i++) {
                fuzz_assert(m->keys[i] && m->values[i]);
                n += touch(m->keys[i]) + touch(m->values[i]);
                /* The first entry with a key is the one get() finds. */
                fuzz_assert(kube_string_map_get(m, m->keys[i]) != NULL);
        }
        return n;
}

static size_t touch_meta(const KubeObjectMeta *m)
{
        return touch(m->name) + touch(m->namespace) + touch(m->uid) + touch(m->resource_version) +
               touch_map(&m->labels) + touch_map(&m->annotations);
}

static void check_error(int r, const KubeParseError *err)
{
        fuzz_assert(r == -EBADMSG || r == -ENOMEM);
        if (r == -EBADMSG)
                fuzz_assert(err->message[0] != '\0');
}

static void parse_object(unsigned kind, json_t *j)
{
        KubeParseError err = {};
        size_t n = 0;
        int r;

        switch (kind) {
        case 0: {
                _cleanup_(kube_service_freep) KubeService *s = NULL;
                r = kube_service_parse(j, &s, &err);
                if (r < 0)
                        break;
                fuzz_assert(s);
                n += touch_meta(&s->meta) + touch(s->type) + touch(s->external_traffic_policy) +
                     touch(s->load_balancer_ip) + touch(s->load_balancer_class) +
                     touch(s->ip_family_policy) + touch_strv(s->ip_families) + touch_strv(s->cluster_ips);
                fuzz_assert(s->n_ports == 0 || s->ports);
                for (size_t i = 0; i < s->n_ports; i++)
                        n += touch(s->ports[i].name) + touch(s->ports[i].protocol);
                fuzz_assert(s->n_ingress == 0 || s->ingress);
                for (size_t i = 0; i < s->n_ingress; i++)
                        n += touch(s->ingress[i].ip) + touch(s->ingress[i].hostname) +
                             touch(s->ingress[i].ip_mode);
                break;
        }
        case 1: {
                _cleanup_(kube_endpointslice_freep) KubeEndpointSlice *s = NULL;
                r = kube_endpointslice_parse(j, &s, &err);
                if (r < 0)
                        break;
                fuzz_assert(s);
                n += touch_meta(&s->meta) + touch(s->address_type) + touch(s->service_name);
                fuzz_assert(s->n_endpoints == 0 || s->endpoints);
                for (size_t i = 0; i < s->n_endpoints; i++) {
                        const KubeEndpoint *e = &s->endpoints[i];
                        n += touch_strv(e->addresses) + touch(e->node_name) + touch(e->hostname) +
                             touch(e->target_kind) + touch(e->target_namespace) + touch(e->target_name) +
                             touch(e->target_uid);
                }
                /* service_name is the label, when there is one. */
                fuzz_assert(streq_ptr(s->service_name,
                                      kube_string_map_get(&s->meta.labels, KUBE_LABEL_SERVICE_NAME)));
                break;
        }
        case 2: {
                _cleanup_(kube_node_freep) KubeNode *no = NULL;
                r = kube_node_parse(j, &no, &err);
                if (r < 0)
                        break;
                fuzz_assert(no);
                n += touch_meta(&no->meta) + touch_strv(no->pod_cidrs);
                fuzz_assert(no->n_addresses == 0 || no->addresses);
                for (size_t i = 0; i < no->n_addresses; i++)
                        n += touch(no->addresses[i].type) + touch(no->addresses[i].address);
                break;
        }
        case 3: {
                _cleanup_(kube_lease_freep) KubeLease *l = NULL;
                uint64_t t;
                r = kube_lease_parse(j, &l, &err);
                if (r < 0)
                        break;
                fuzz_assert(l);
                n += touch_meta(&l->meta) + touch(l->holder_identity);
                fuzz_assert(l->has_holder_identity == (l->holder_identity != NULL));
                /* Only valid MicroTimes get through. */
                fuzz_assert(!l->acquire_time || kube_microtime_parse(l->acquire_time, &t) == 0);
                fuzz_assert(!l->renew_time || kube_microtime_parse(l->renew_time, &t) == 0);
                break;
        }
        case 4: {
                _cleanup_(kube_configmap_freep) KubeConfigMap *c = NULL;
                r = kube_configmap_parse(j, &c, &err);
                if (r < 0)
                        break;
                fuzz_assert(c);
                n += touch_meta(&c->meta) + touch_map(&c->data);
                break;
        }
        case 5: {
                _cleanup_(kube_pod_freep) KubePod *p = NULL;
                r = kube_pod_parse(j, &p, &err);
                if (r < 0)
                        break;
                fuzz_assert(p);
                n += touch_meta(&p->meta) + touch(p->node_name) + touch(p->phase) + touch_strv(p->pod_ips);
                fuzz_assert(p->n_containers == 0 || p->containers);
                for (size_t i = 0; i < p->n_containers; i++)
                        n += touch(p->containers[i].name) + touch_strv(p->containers[i].command) +
                             touch_strv(p->containers[i].args);
                break;
        }
        case 6: {
                _cleanup_(kube_servicecidr_freep) KubeServiceCIDR *s = NULL;
                r = kube_servicecidr_parse(j, &s, &err);
                if (r < 0)
                        break;
                fuzz_assert(s);
                n += touch_meta(&s->meta) + touch_strv(s->cidrs);
                break;
        }
        default: {
                _cleanup_(kube_status_freep) KubeStatus *s = NULL;
                r = kube_status_parse(j, &s, &err);
                if (r < 0)
                        break;
                fuzz_assert(s);
                n += touch(s->status) + touch(s->message) + touch(s->reason);
                break;
        }
        }
        if (r < 0)
                check_error(r, &err);
        else
                fuzz_assert(r == 0);
        fuzz_escape(&n);
}

static void parse_time(bool micro, const char *s)
{
        char buf[32];
        uint64_t t, again;

        if ((micro ? kube_microtime_parse(s, &t) : kube_time_parse(s, &t)) < 0)
                return;
        if (micro)
                /* Exactly six fractional digits, so the text has a fixed shape. */
                fuzz_assert(strlen(s) >= strlen("2006-01-02T15:04:05.000000Z"));
        /* Years past 9999 (reachable through a negative offset) do not
         * format; everything else round-trips through MicroTime. */
        if (kube_microtime_format(t, buf) < 0)
                return;
        fuzz_assert(strlen(buf) == strlen("2006-01-02T15:04:05.000000Z"));
        fuzz_assert(kube_microtime_parse(buf, &again) == 0 && again == t);
        fuzz_assert(kube_time_parse(buf, &again) == 0 && again == t);
        if (kube_time_format(t, buf) == 0)
                fuzz_assert(kube_time_parse(buf, &again) == 0 && again == t - t % USEC_PER_SEC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        unsigned kind;

        if (size < 1 || size > 512 * 1024)
                return 0;
        kind = data[0] % 10;
        if (kind >= 8) {
                _cleanup_free_ char *s = NULL;
                if (size > 256)
                        return 0;
                s = fuzz_strdup(data + 1, size - 1);
                if (s)
                        parse_time(kind == 8, s);
                return 0;
        }

        /* JSON_ALLOW_NUL: let "\u0000" through to the parsers, which must
         * refuse it where a NUL would truncate a name. */
        json_error_t jerr;
        json_t *j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j)
                return 0;
        parse_object(kind, j);
        json_decref(j);
        return 0;
}
