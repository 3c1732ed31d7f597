/* SPDX-License-Identifier: Apache-2.0 */
/* The watch stream splitter (see kube-internal.h). Only the new bytes of each
 * chunk are scanned, so a large event arriving a byte at a time costs linear
 * time; jansson parses each value once, when it is complete. */
#include <errno.h>
#include <string.h>

#include "kube-internal.h"

void kube_json_splitter_init(KubeJsonSplitter *s, size_t max_value)
{
        *s = (KubeJsonSplitter){.max_value = max_value};
}

void kube_json_splitter_done(KubeJsonSplitter *s)
{
        kube_buf_done(&s->buf);
        kube_json_splitter_init(s, s->max_value);
}

bool kube_json_splitter_partial(const KubeJsonSplitter *s)
{
        return s->depth > 0;
}

static void compact(KubeJsonSplitter *s)
{
        /* Moving bytes costs; only do it once the dead prefix dominates. */
        if (s->start == 0 || (s->start < 65536 && s->start * 2 < s->buf.len))
                return;
        kube_buf_consume(&s->buf, s->start);
        s->scan -= s->start;
        s->start = 0;
}

int kube_json_splitter_feed(KubeJsonSplitter *s, const void *p, size_t n, KubeJsonValueFn fn, void *userdata)
{
        int r;

        r = kube_buf_append(&s->buf, p, n);
        if (r < 0)
                return r;

        while (s->scan < s->buf.len) {
                char c = s->buf.data[s->scan];

                if (s->depth == 0) {
                        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                                s->scan++;
                                s->start = s->scan;
                                continue;
                        }
                        if (c != '{' && c != '[')
                                return -EBADMSG;
                        s->start = s->scan;
                        s->depth = 1;
                        s->scan++;
                        continue;
                }

                if (s->in_string) {
                        if (s->escape)
                                s->escape = false;
                        else if (c == '\\')
                                s->escape = true;
                        else if (c == '"')
                                s->in_string = false;
                } else if (c == '"')
                        s->in_string = true;
                else if (c == '{' || c == '[') {
                        if (++s->depth > KUBE_JSON_DEPTH_MAX)
                                return -EBADMSG;
                } else if (c == '}' || c == ']') {
                        if (--s->depth == 0) {
                                size_t end = s->scan + 1, begin = s->start;
                                json_error_t jerr;
                                json_t *v = NULL;

                                s->scan = s->start = end;
                                /* "\u0000" is valid JSON, and the API server
                                 * stores it in annotation values: refusing the
                                 * event would stall the watch at it, for every
                                 * object. The object parsers refuse a NUL in
                                 * the field that holds it, naming the field. */
                                v = json_loadb(s->buf.data + begin, end - begin, JSON_ALLOW_NUL, &jerr);
                                if (!v)
                                        return -EBADMSG;
                                r = fn(v, userdata);
                                json_decref(v);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                }
                s->scan++;
                if (s->scan - s->start > s->max_value)
                        return -E2BIG;
        }
        compact(s);
        return 0;
}
