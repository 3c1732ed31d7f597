/* SPDX-License-Identifier: Apache-2.0 */
/* Just enough YAML for kubeconfig files: libyaml's event stream turned into a
 * jansson tree. Only the first document is read. Anchors and aliases are
 * refused (kubeconfigs do not use them, and aliases are how YAML "billion
 * laughs" inputs blow up). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "kube-internal.h"

#define YAML_DEPTH_MAX 64

/* YAML 1.1 as go-yaml v2 reads it, which is what kubectl uses. */
static json_t *plain_scalar(const char *s)
{
        static const char *const yes[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
                                          "True", "TRUE", "on",  "On",  "ON"};
        static const char *const no[] = {"n",     "N",     "no",  "No",  "NO", "false",
                                         "False", "FALSE", "off", "Off", "OFF"};

        if (*s == '\0' || streq(s, "~") || streq(s, "null") || streq(s, "Null") || streq(s, "NULL"))
                return json_null();
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (streq(s, yes[i]))
                        return json_true();
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (streq(s, no[i]))
                        return json_false();
        return json_string(s);
}

int kube_yaml_parse(const char *text, size_t size, json_t **ret, char **ret_error)
{
        yaml_parser_t parser_storage, *parser;
        json_t *stack[YAML_DEPTH_MAX] = {};
        char *keys[YAML_DEPTH_MAX] = {};
        json_t *root = NULL;
        unsigned depth = 0;
        int r = 0;
        bool done = false;

        if (!yaml_parser_initialize(&parser_storage))
                return -ENOMEM;
        parser = &parser_storage;
        yaml_parser_set_input_string(parser, (const unsigned char *)text, size);

        while (!done) {
                yaml_event_t ev;
                json_t *v = NULL;
                bool push = false;

                if (!yaml_parser_parse(parser, &ev)) {
                        if (ret_error)
                                (void)asprintf(
                                        ret_error, "line %zu column %zu: %s", parser->problem_mark.line + 1,
                                        parser->problem_mark.column + 1, parser->problem ?: "invalid YAML");
                        r = -EBADMSG;
                        break;
                }

                switch (ev.type) {
                case YAML_SCALAR_EVENT:
                        if (ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev.data.scalar.tag)
                                v = plain_scalar((const char *)ev.data.scalar.value);
                        else
                                v = json_stringn((const char *)ev.data.scalar.value, ev.data.scalar.length);
                        if (!v) {
                                /* jansson refuses invalid UTF-8. */
                                if (ret_error)
                                        (void)asprintf(ret_error, "line %zu: invalid scalar",
                                                       ev.start_mark.line + 1);
                                r = -EBADMSG;
                        }
                        break;
                case YAML_SEQUENCE_START_EVENT:
                        v = json_array();
                        push = true;
                        break;
                case YAML_MAPPING_START_EVENT:
                        v = json_object();
                        push = true;
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        depth--;
                        free(keys[depth]);
                        keys[depth] = NULL;
                        if (depth == 0)
                                done = true;
                        break;
                case YAML_ALIAS_EVENT:
                        if (ret_error)
                                (void)asprintf(ret_error, "line %zu: YAML aliases are not supported",
                                               ev.start_mark.line + 1);
                        r = -EBADMSG;
                        break;
                case YAML_DOCUMENT_END_EVENT:
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                default:
                        break;
                }
                if (r == 0 && v) {
                        if (depth == 0) {
                                if (root) {
                                        json_decref(v);
                                        v = NULL;
                                } else
                                        root = json_incref(v);
                                if (!push)
                                        done = true;
                        } else {
                                json_t *parent = stack[depth - 1];

                                if (json_is_array(parent))
                                        r = json_array_append(parent, v) < 0 ? -ENOMEM : 0;
                                else if (!keys[depth - 1]) {
                                        /* A key: only scalars can be kubeconfig keys. */
                                        if (!json_is_string(v) && !json_is_boolean(v) && !json_is_null(v)) {
                                                if (ret_error)
                                                        (void)asprintf(
                                                                ret_error,
                                                                "line %zu: mapping key is not a scalar",
                                                                ev.start_mark.line + 1);
                                                r = -EBADMSG;
                                        } else {
                                                keys[depth - 1] =
                                                        strdup(json_is_string(v)  ? json_string_value(v)
                                                               : json_is_true(v)  ? "true"
                                                               : json_is_false(v) ? "false"
                                                                                  : "");
                                                if (!keys[depth - 1])
                                                        r = -ENOMEM;
                                                push = false;
                                        }
                                } else {
                                        r = json_object_set(parent, keys[depth - 1], v) < 0 ? -ENOMEM : 0;
                                        keys[depth - 1] = mfree(keys[depth - 1]);
                                }
                        }
                        if (r == 0 && push) {
                                if (depth >= YAML_DEPTH_MAX) {
                                        if (ret_error)
                                                (void)asprintf(ret_error, "line %zu: nested too deeply",
                                                               ev.start_mark.line + 1);
                                        r = -EBADMSG;
                                } else
                                        stack[depth++] = v;
                        }
                        json_decref(v);
                }
                yaml_event_delete(&ev);
                if (r < 0)
                        break;
        }

        yaml_parser_delete(parser);
        for (unsigned i = 0; i < YAML_DEPTH_MAX; i++)
                free(keys[i]);
        if (r < 0) {
                json_decref(root);
                return r;
        }
        if (!root) {
                if (ret_error)
                        *ret_error = strdup("empty document");
                return -ENODATA;
        }
        *ret = root;
        return 0;
}
