/* ctl_json: the JSON helpers of the controllers that keep a value inside a JSON document
 * (http_json, file with format json): RFC 6901 pointers and the conversion between JSON scalars
 * and setting values. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "casca_err.h"
#include "ctl.h"

json_t *ctl_json_follow(json_t *root, const char *ptr, json_t **parent, char **key)
{
    json_t *cur = root, *par = NULL;
    char *last = NULL;
    const char *p = ptr;
    while (cur && *p == '/') {
        p++;
        size_t n = strcspn(p, "/");
        free(last);
        if (!(last = malloc(n + 1)))
            return NULL;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1'))
                last[o++] = p[++i] == '0' ? '~' : '/';
            else
                last[o++] = p[i];
        }
        last[o] = 0;
        p += n;
        par = cur;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, last);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(last, &end, 10);
            cur = *last && !*end ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
    }
    if (parent)
        *parent = par;
    if (key)
        *key = last;
    else
        free(last);
    return cur;
}

int ctl_json_to_value(const json_t *j, struct ctl_value *out)
{
    memset(out, 0, sizeof(*out));
    if (json_is_integer(j))
        *out = (struct ctl_value){.kind = CTL_INT, .i = json_integer_value(j)};
    else if (json_is_real(j))
        *out = (struct ctl_value){.kind = CTL_DOUBLE, .d = json_real_value(j)};
    else if (json_is_boolean(j))
        *out = (struct ctl_value){.kind = CTL_BOOL, .b = json_is_true(j)};
    else if (json_is_string(j)) {
        *out = (struct ctl_value){.kind = CTL_STRING, .s = strdup(json_string_value(j))};
        if (!out->s)
            return CASCA_ERR_NOMEM;
    } else
        return CASCA_ERR_INVALID;
    return CASCA_OK;
}

json_t *ctl_json_from_value(const struct ctl_value *v)
{
    switch (v->kind) {
    case CTL_INT: return json_integer(v->i);
    case CTL_DOUBLE: return json_real(v->d);
    case CTL_BOOL: return json_boolean(v->b);
    case CTL_STRING: return json_string(v->s);
    default: return json_null();
    }
}
