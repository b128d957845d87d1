/* sipgrid.sip._fast in C: the three readers of _fast.py, which is the reference and says
 * what each one reads. Each returns None for any text outside the shape it reads, never an
 * error of its own: the caller then reads the text with its careful reader. Only
 * TypeError and MemoryError come out of here. tests/sip/test_fast.py holds these to the
 * answers of _fast.py. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* what each ASCII character may be: TOKEN (token = 1*(alphanum / "-" / "." / "!" / "%"
 * / "*" / "_" / "+" / "`" / "'" / "~")), VALUE (a parameter's value in _fast.py's
 * _simple_params_re: a token's characters, ":", "[", "]") */
enum { TOKEN = 1, VALUE = 2 };
static unsigned char classes[128];

static void
fill_classes(void)
{
    const char *token = "-.!%*_+`'~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (const char *c = token; *c; c++)
        classes[(unsigned char)*c] = TOKEN | VALUE;
    classes[':'] = classes['['] = classes[']'] = VALUE;
}

static inline int
is_token(Py_UCS4 c)
{
    return c < 128 && (classes[c] & TOKEN);
}

static inline int
is_value(Py_UCS4 c)
{
    return c < 128 && (classes[c] & VALUE);
}

static inline int
is_blank(Py_UCS4 c)
{
    return c == ' ' || c == '\t';
}

/* fields(lines, known) */
static PyObject *
fast_fields(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "fields() takes lines and known");
        return NULL;
    }
    PyObject *lines = args[0], *known = args[1];
    if (!PyList_Check(lines) || !PyDict_Check(known)) {
        PyErr_SetString(PyExc_TypeError, "fields() takes a list and a dict");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(lines);
    PyObject *out = PyList_New(count > 0 ? 3 * (count - 1) : 0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t index = 1; index < count; index++) {
        PyObject *line = PyList_GET_ITEM(lines, index);
        if (!PyUnicode_Check(line)) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "fields() takes a list of str");
            return NULL;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(line);
        Py_ssize_t colon = PyUnicode_FindChar(line, ':', 0, length, 1);
        if (colon == -2) {
            Py_DECREF(out);
            return NULL;
        }
        if (colon < 0) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        PyObject *name = PyUnicode_Substring(line, 0, colon);
        if (name == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *found = PyDict_GetItemWithError(known, name); /* borrowed */
        Py_DECREF(name);
        if (found == NULL) {
            Py_DECREF(out);
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "fields(): known maps a name to (key, name)");
            return NULL;
        }
        int kind = PyUnicode_KIND(line);
        const void *data = PyUnicode_DATA(line);
        Py_ssize_t start = colon + 1, stop = length;
        while (start < stop && is_blank(PyUnicode_READ(kind, data, start)))
            start++;
        while (stop > start && is_blank(PyUnicode_READ(kind, data, stop - 1)))
            stop--;
        PyObject *value = PyUnicode_Substring(line, start, stop);
        if (value == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        Py_ssize_t at = 3 * (index - 1);
        PyList_SET_ITEM(out, at, Py_NewRef(PyTuple_GET_ITEM(found, 0)));
        PyList_SET_ITEM(out, at + 1, Py_NewRef(PyTuple_GET_ITEM(found, 1)));
        PyList_SET_ITEM(out, at + 2, value); /* steals the reference */
    }
    return out;
}

/* header_params(text) */
static PyObject *
fast_header_params(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "header_params() takes a str");
        return NULL;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    /* first the whole text's shape, so that nothing is made for a text that fails */
    Py_ssize_t items = 0, at = 0;
    if (length == 0)
        Py_RETURN_NONE;
    while (at < length) {
        if (PyUnicode_READ(kind, data, at) != ';')
            Py_RETURN_NONE;
        Py_ssize_t name = ++at;
        while (at < length && is_token(PyUnicode_READ(kind, data, at)))
            at++;
        if (at == name)
            Py_RETURN_NONE;
        if (at < length && PyUnicode_READ(kind, data, at) == '=') {
            Py_ssize_t value = ++at;
            while (at < length && is_value(PyUnicode_READ(kind, data, at)))
                at++;
            if (at == value)
                Py_RETURN_NONE;
        }
        items++;
    }
    PyObject *out = PyTuple_New(items);
    if (out == NULL)
        return NULL;
    at = 0;
    for (Py_ssize_t item = 0; item < items; item++) {
        Py_ssize_t name = ++at; /* past the ';' */
        while (at < length && is_token(PyUnicode_READ(kind, data, at)))
            at++;
        PyObject *key = PyUnicode_Substring(text, name, at);
        PyObject *given = NULL;
        if (key != NULL && at < length && PyUnicode_READ(kind, data, at) == '=') {
            Py_ssize_t value = ++at;
            while (at < length && is_value(PyUnicode_READ(kind, data, at)))
                at++;
            given = PyUnicode_Substring(text, value, at);
            if (given == NULL)
                Py_CLEAR(key);
        }
        else if (key != NULL) {
            given = Py_NewRef(Py_None);
        }
        if (key == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *pair = PyTuple_Pack(2, key, given);
        Py_DECREF(key);
        Py_DECREF(given);
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, item, pair);
    }
    return out;
}

/* digest's parameter names in the case every client writes them: no lower() needed,
 * and the str of each made once (interned, its hash kept) */
static const char *const PARAM_NAMES[] = {
    "username", "realm", "nonce", "uri", "response", "algorithm", "cnonce",
    "opaque", "qop", "nc", "userhash", "stale", "domain", NULL,
};
#define PARAM_COUNT (sizeof(PARAM_NAMES) / sizeof(PARAM_NAMES[0]) - 1)
static PyObject *param_names[PARAM_COUNT];

/* the str of the name at data[start:stop] if it is one of PARAM_NAMES (borrowed), else NULL */
static PyObject *
param_name(int kind, const void *data, Py_ssize_t start, Py_ssize_t stop)
{
    for (size_t n = 0; n < PARAM_COUNT; n++) {
        const char *name = PARAM_NAMES[n];
        Py_ssize_t i = 0;
        while (start + i < stop && name[i] != 0 &&
               PyUnicode_READ(kind, data, start + i) == (Py_UCS4)(unsigned char)name[i])
            i++;
        if (start + i == stop && name[i] == 0)
            return param_names[n];
    }
    return NULL;
}

/* digest_params(rest) */
static PyObject *
fast_digest_params(PyObject *Py_UNUSED(module), PyObject *rest)
{
    if (!PyUnicode_Check(rest)) {
        PyErr_SetString(PyExc_TypeError, "digest_params() takes a str");
        return NULL;
    }
    Py_ssize_t end = PyUnicode_GET_LENGTH(rest);
    int kind = PyUnicode_KIND(rest);
    const void *data = PyUnicode_DATA(rest);
    PyObject *params = PyDict_New();
    if (params == NULL)
        return NULL;
    Py_ssize_t at = 0;
    while (at < end && is_blank(PyUnicode_READ(kind, data, at)))
        at++;
    while (at < end) {
        Py_ssize_t equals = at;
        while (equals < end && PyUnicode_READ(kind, data, equals) != '=')
            equals++;
        if (equals == end)
            goto unusual;
        Py_ssize_t name_stop = equals;
        while (name_stop > at && is_blank(PyUnicode_READ(kind, data, name_stop - 1)))
            name_stop--;
        PyObject *name = param_name(kind, data, at, name_stop);
        if (name != NULL) {
            Py_INCREF(name);
        }
        else {
            /* a token, which is ASCII: lower() is the ASCII one */
            if (name_stop == at)
                goto unusual;
            char lower[64];
            if (name_stop - at > (Py_ssize_t)sizeof(lower)) {
                /* a long name: made and lowered by str's own methods */
                for (Py_ssize_t i = at; i < name_stop; i++)
                    if (!is_token(PyUnicode_READ(kind, data, i)))
                        goto unusual;
                PyObject *given = PyUnicode_Substring(rest, at, name_stop);
                if (given == NULL)
                    goto error;
                name = PyObject_CallMethod(given, "lower", NULL);
                Py_DECREF(given);
            }
            else {
                Py_ssize_t size = name_stop - at;
                for (Py_ssize_t i = 0; i < size; i++) {
                    Py_UCS4 c = PyUnicode_READ(kind, data, at + i);
                    if (!is_token(c))
                        goto unusual;
                    lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
                }
                name = PyUnicode_FromStringAndSize(lower, size);
            }
        }
        if (name == NULL)
            goto error;
        at = equals + 1;
        while (at < end && is_blank(PyUnicode_READ(kind, data, at)))
            at++;
        Py_ssize_t value_start, value_stop;
        if (at < end && PyUnicode_READ(kind, data, at) == '"') {
            Py_ssize_t close = at + 1;
            Py_UCS4 c = 0;
            while (close < end) {
                c = PyUnicode_READ(kind, data, close);
                if (c == '"' || c == '\\' || c == '\r' || c == '\n')
                    break;
                close++;
            }
            if (close == end || c != '"') {
                Py_DECREF(name);
                goto unusual;
            }
            value_start = at + 1;
            value_stop = close;
            at = close + 1;
            while (at < end && is_blank(PyUnicode_READ(kind, data, at)))
                at++;
        }
        else {
            Py_ssize_t stop = at;
            while (stop < end && PyUnicode_READ(kind, data, stop) != ',')
                stop++;
            value_start = at;
            value_stop = stop;
            while (value_stop > value_start && is_blank(PyUnicode_READ(kind, data, value_stop - 1)))
                value_stop--;
            for (Py_ssize_t i = value_start; i < value_stop; i++) {
                Py_UCS4 c = PyUnicode_READ(kind, data, i);
                if (c == '"' || is_blank(c)) {
                    Py_DECREF(name);
                    goto unusual;
                }
            }
            at = stop;
        }
        if (at < end) {
            if (PyUnicode_READ(kind, data, at) != ',') {
                Py_DECREF(name);
                goto unusual;
            }
            at++;
            while (at < end && is_blank(PyUnicode_READ(kind, data, at)))
                at++;
            if (at == end && PyUnicode_READ(kind, data, end - 1) != ',') {
                Py_DECREF(name);
                goto unusual;
            }
        }
        PyObject *value = PyUnicode_Substring(rest, value_start, value_stop);
        if (value == NULL) {
            Py_DECREF(name);
            goto error;
        }
        int failed = PyDict_SetItem(params, name, value);
        Py_DECREF(name);
        Py_DECREF(value);
        if (failed)
            goto error;
    }
    return params;
unusual:
    Py_DECREF(params);
    Py_RETURN_NONE;
error:
    Py_DECREF(params);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fields", (PyCFunction)(void (*)(void))fast_fields, METH_FASTCALL,
     "Key, name and value of each header line of lines[1:], or None (see _fast.py)."},
    {"header_params", fast_header_params, METH_O,
     "';name[=value]...' as pairs, or None (see _fast.py)."},
    {"digest_params", fast_digest_params, METH_O,
     "A digest value's parameters, or None (see _fast.py)."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {{0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "sipgrid.sip._fast",
    "The readers of sipgrid/sip/_fast.py, in C.",
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

/* multi-phase initialisation: a test that loads this file beside the reference does not
 * put it in sys.modules (single-phase modules are put there when made) */
PyMODINIT_FUNC
PyInit__fast(void)
{
    if (param_names[PARAM_COUNT - 1] == NULL) { /* once a process, as the table of classes */
        fill_classes();
        for (size_t n = 0; n < PARAM_COUNT; n++) {
            param_names[n] = PyUnicode_InternFromString(PARAM_NAMES[n]);
            if (param_names[n] == NULL)
                return NULL;
        }
    }
    return PyModuleDef_Init(&module);
}
