/* The json interpreter: JSON pointers (RFC 6901) pick value fields, tags and the time out of each
 * message; a message may be one object or an array of objects (a batch). Each configured value
 * field becomes one point of its own series, all with the object's time and tags. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "casca_err.h"
#include "hooks.h"

static void release_json(void *json)
{
    json_decref(json);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

/* The value at f's pointer, or NULL when missing (a JSON null counts as missing). */
static json_t *resolve(json_t *root, const struct hook_field *f)
{
    json_t *cur = root;
    for (size_t i = 0; cur && i < f->ntokens; i++) {
        const char *tok = f->tokens[i];
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            size_t n = strspn(tok, "0123456789");
            if (!*tok || tok[n] || (tok[0] == '0' && tok[1]) || n > 9) return NULL;
            cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        } else {
            return NULL;
        }
    }
    return json_is_null(cur) ? NULL : cur;
}

static int object_time(const struct hook_config *h, json_t *obj, int64_t received_ns, int64_t *t,
                       char *err, size_t errlen)
{
    const struct hook_time *ht = &h->time;
    if (ht->f.kind == HOOK_FIELD_RECEIVED) {
        *t = received_ns;
        return CASCA_OK;
    }
    json_t *v = resolve(obj, &ht->f);
    if (!v) {
        if (!ht->f.has_default) {
            snprintf(err, errlen,
                     "time field %s is missing (add time.default: $RECEIVED to use "
                     "the time of receipt)",
                     ht->f.text);
            return CASCA_ERR_INVALID;
        }
        if (!strcmp(ht->f.def_str, "$RECEIVED")) {
            *t = received_ns;
            return CASCA_OK;
        }
        return hook_time_parse_string(ht, ht->f.def_str, t);
    }
    int rc = CASCA_ERR_INVALID;
    if (json_is_string(v))
        rc = hook_time_parse_string(ht, json_string_value(v), t);
    else if (json_is_number(v))
        rc = hook_time_parse_number(ht, json_number_value(v), t);
    if (rc != CASCA_OK)
        snprintf(err, errlen, "time field %s: %s%s%s does not match time.format %s", ht->f.text,
                 json_is_string(v) ? "'" : "a ",
                 json_is_string(v) ? json_string_value(v) : type_name(v),
                 json_is_string(v) ? "'" : "", ht->format ? ht->format : "(rfc3339 or unix)");
    return rc;
}

static int object_tags(const struct hook_config *h, const char *topic, json_t *obj,
                       struct hook_batch *out, struct tsdb_tag **tags, char *err, size_t errlen)
{
    *tags = h->ntags ? hook_batch_alloc(out, h->ntags * sizeof(**tags)) : NULL;
    if (h->ntags && !*tags) return CASCA_ERR_NOMEM;
    for (size_t i = 0; i < h->ntags; i++) {
        const struct hook_tagspec *ts = &h->tags[i];
        const char *value = ts->f.text;
        if (ts->f.kind == HOOK_FIELD_TOPIC) {
            value = topic;
        } else if (ts->f.kind == HOOK_FIELD_POINTER) {
            json_t *v = resolve(obj, &ts->f);
            char num[40];
            if (!v && ts->f.has_default) {
                value = ts->f.def_str;
            } else if (!v) {
                snprintf(err, errlen, "tag %s: field %s is missing (give it a default)", ts->key,
                         ts->f.text);
                return CASCA_ERR_INVALID;
            } else if (json_is_string(v)) {
                value = json_string_value(v);
            } else if (json_is_boolean(v)) {
                value = json_is_true(v) ? "true" : "false";
            } else if (json_is_number(v)) {
                if (json_is_integer(v))
                    snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                else
                    snprintf(num, sizeof(num), "%.17g", json_real_value(v));
                char *copy = hook_batch_alloc(out, strlen(num) + 1);
                if (!copy) return CASCA_ERR_NOMEM;
                value = strcpy(copy, num);
            } else {
                snprintf(err, errlen, "tag %s: field %s is an %s, not a string or number", ts->key,
                         ts->f.text, type_name(v));
                return CASCA_ERR_INVALID;
            }
        }
        (*tags)[i] = (struct tsdb_tag){ts->key, value};
    }
    return CASCA_OK;
}

static int one_object(const struct hook_config *h, const char *topic, json_t *obj,
                      int64_t received_ns, struct hook_batch *out, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "expected a JSON object (or an array of objects), not a%s %s",
                 json_is_array(obj) || json_is_object(obj) ? "n" : "", type_name(obj));
        return CASCA_ERR_INVALID;
    }
    int64_t t;
    struct tsdb_tag *tags;
    int rc;
    if ((rc = object_time(h, obj, received_ns, &t, err, errlen)) ||
        (rc = object_tags(h, topic, obj, out, &tags, err, errlen)))
        return rc;
    for (size_t i = 0; i < h->nvalues; i++) {
        const struct hook_series *s = &h->values[i];
        json_t *v = resolve(obj, &s->f);
        double value;
        if (!v && s->f.has_default) {
            value = s->f.def_num;
        } else if (!v) {
            if (!rc)
                snprintf(err, errlen,
                         "series %s: field %s is missing (give it a default if it "
                         "may be absent)",
                         s->series, s->f.text);
            rc = CASCA_ERR_INVALID;
            continue;
        } else if (json_is_number(v)) {
            value = json_number_value(v);
        } else if (json_is_boolean(v)) {
            value = json_is_true(v);
        } else {
            if (!rc)
                snprintf(err, errlen, "series %s: field %s is a %s, not a number", s->series,
                         s->f.text, type_name(v));
            rc = CASCA_ERR_INVALID;
            continue;
        }
        if (!isfinite(value)) {
            if (!rc)
                snprintf(err, errlen, "series %s: field %s is not a finite number", s->series,
                         s->f.text);
            rc = CASCA_ERR_INVALID;
            continue;
        }
        struct tsdb_point *p = hook_batch_add(out);
        if (!p) return CASCA_ERR_NOMEM;
        *p = (struct tsdb_point){s->series, tags, h->ntags, t, value};
    }
    return rc;
}

int hook_json_interpret(const struct hook_config *h, const char *topic, const void *payload,
                        size_t len, int64_t received_ns, struct hook_batch *out, char *err,
                        size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(payload, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        snprintf(err, errlen, "malformed JSON at line %d column %d: %s", je.line, je.column,
                 je.text);
        return CASCA_ERR_INVALID;
    }
    out->held = root; /* the points' strings point into it until the batch is reset */
    out->release = release_json;
    if (!json_is_array(root)) return one_object(h, topic, root, received_ns, out, err, errlen);
    int first = CASCA_OK;
    size_t i;
    json_t *item;
    json_array_foreach(root, i, item)
    {
        char one[512];
        int rc = one_object(h, topic, item, received_ns, out, one, sizeof(one));
        if (rc && !first) {
            first = rc;
            snprintf(err, errlen, "item %zu: %s", i, one);
        }
        if (rc == CASCA_ERR_NOMEM) break;
    }
    return first;
}
