/* sipgrid.sip._fast in C: the readers of _fast.py, which is the reference and says
 * what each one reads. Each returns None for any text outside the shape it reads, never an
 * error of its own: the caller then reads the text with its careful reader. Only
 * TypeError and MemoryError come out of here. tests/sip/test_fast.py holds these to the
 * answers of _fast.py. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* what each ASCII character may be, one bit a class:
 * TOKEN   token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
 * VALUE   a header parameter's value in _fast.py's _simple_params_re: a token's, ":[]"
 * USER    a SIP URI's user part in _fast.py's _sip_uri_re
 * PASS    its password
 * HOST    a host name or IPv4 address
 * HEX6    the inside of an IPv6 reference
 * UPARAM  a URI parameter's name or value
 * HDR     the URI's headers, after "?" */
enum { TOKEN = 1, VALUE = 2, USER = 4, PASS = 8, HOST = 16, HEX6 = 32, UPARAM = 64, HDR = 128 };
static unsigned char classes[128];

static void
mark(const char *chars, unsigned char class)
{
    for (const char *c = chars; *c; c++)
        classes[(unsigned char)*c] |= class;
}

static void
fill_classes(void)
{
    const char *alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    mark(alnum, TOKEN | VALUE | USER | PASS | HOST | UPARAM | HDR);
    mark("-.!%*_+`'~", TOKEN | VALUE);
    mark(":[]", VALUE);
    mark("-_.!~*'()&=+$,;?/%#", USER);
    mark("-_.!~*'()&=+$,%", PASS);
    mark("-_.", HOST);
    mark("0123456789abcdefABCDEF:.", HEX6);
    mark("-_.!~*'()[]/:&+$%", UPARAM);
    mark("-_.!~*'()[]/?:+$%=&", HDR);
}

static inline int
is(Py_UCS4 c, unsigned char class)
{
    return c < 128 && (classes[c] & class);
}

static inline int
is_token(Py_UCS4 c)
{
    return is(c, TOKEN);
}

static inline int
is_value(Py_UCS4 c)
{
    return is(c, VALUE);
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


/* the index of the first character from at on that is not of class, or at */
static Py_ssize_t
run(int kind, const void *data, Py_ssize_t at, Py_ssize_t end, unsigned char class)
{
    while (at < end && is(PyUnicode_READ(kind, data, at), class))
        at++;
    return at;
}

/* text[start:stop] as a new str, or None for start < 0 (an absent part) */
static PyObject *
part(PyObject *text, Py_ssize_t start, Py_ssize_t stop)
{
    if (start < 0)
        Py_RETURN_NONE;
    return PyUnicode_Substring(text, start, stop);
}

/* sip_uri(rest) */
static PyObject *
fast_sip_uri(PyObject *Py_UNUSED(module), PyObject *rest)
{
    if (!PyUnicode_Check(rest)) {
        PyErr_SetString(PyExc_TypeError, "sip_uri() takes a str");
        return NULL;
    }
    Py_ssize_t end = PyUnicode_GET_LENGTH(rest);
    int kind = PyUnicode_KIND(rest);
    const void *data = PyUnicode_DATA(rest);
    Py_ssize_t user = -1, user_stop = 0, password = -1, password_stop = 0;
    Py_ssize_t at = 0;
    /* No class but USER and PASS takes "@", and neither takes ":" or "@": with an "@" in
     * the text, the user part is the longest run of USER, then a password after ":", then
     * "@", or the text is not of this shape (the regex could not match another way). */
    if (PyUnicode_FindChar(rest, '@', 0, end, 1) >= 0) {
        at = run(kind, data, 0, end, USER);
        if (at == 0)
            Py_RETURN_NONE;
        user = 0;
        user_stop = at;
        if (at < end && PyUnicode_READ(kind, data, at) == ':') {
            password = at + 1;
            at = password_stop = run(kind, data, password, end, PASS);
        }
        if (at == end || PyUnicode_READ(kind, data, at) != '@')
            Py_RETURN_NONE;
        at++;
    }
    Py_ssize_t host = at, host_stop;
    if (at < end && PyUnicode_READ(kind, data, at) == '[') {
        Py_ssize_t close = run(kind, data, at + 1, end, HEX6);
        if (close == at + 1 || close == end || PyUnicode_READ(kind, data, close) != ']')
            Py_RETURN_NONE;
        host_stop = at = close + 1;
    }
    else {
        host_stop = at = run(kind, data, at, end, HOST);
        if (at == host)
            Py_RETURN_NONE;
    }
    long port = -1;
    if (at < end && PyUnicode_READ(kind, data, at) == ':') {
        Py_ssize_t digits = ++at;
        port = 0;
        while (at < end && at - digits < 5) {
            Py_UCS4 c = PyUnicode_READ(kind, data, at);
            if (c < '0' || c > '9')
                break;
            port = port * 10 + (long)(c - '0');
            at++;
        }
        if (at == digits || port > 65535)
            Py_RETURN_NONE;
    }
    /* the parameters: counted and checked first, made after */
    Py_ssize_t params = at, count = 0;
    while (at < end && PyUnicode_READ(kind, data, at) == ';') {
        Py_ssize_t name = at + 1;
        at = run(kind, data, name, end, UPARAM);
        if (at == name)
            Py_RETURN_NONE;
        if (at < end && PyUnicode_READ(kind, data, at) == '=') {
            Py_ssize_t value = at + 1;
            at = run(kind, data, value, end, UPARAM);
            if (at == value)
                Py_RETURN_NONE;
        }
        count++;
    }
    Py_ssize_t headers = -1;
    if (at < end && PyUnicode_READ(kind, data, at) == '?') {
        headers = at + 1;
        at = run(kind, data, headers, end, HDR);
    }
    if (at != end)
        Py_RETURN_NONE;
    PyObject *pairs = PyTuple_New(count);
    if (pairs == NULL)
        return NULL;
    at = params;
    for (Py_ssize_t item = 0; item < count; item++) {
        Py_ssize_t name = at + 1;
        at = run(kind, data, name, end, UPARAM);
        Py_ssize_t name_stop = at, value = -1;
        if (at < end && PyUnicode_READ(kind, data, at) == '=') {
            value = at + 1;
            at = run(kind, data, value, end, UPARAM);
        }
        PyObject *key = PyUnicode_Substring(rest, name, name_stop);
        PyObject *given = key == NULL ? NULL : part(rest, value, at);
        PyObject *pair = given == NULL ? NULL : PyTuple_Pack(2, key, given);
        Py_XDECREF(key);
        Py_XDECREF(given);
        if (pair == NULL) {
            Py_DECREF(pairs);
            return NULL;
        }
        PyTuple_SET_ITEM(pairs, item, pair);
    }
    PyObject *items[6] = {
        part(rest, user, user_stop),
        part(rest, password, password_stop),
        PyUnicode_Substring(rest, host, host_stop),
        port < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(port),
        pairs,
        part(rest, headers, end),
    };
    PyObject *out = NULL;
    if (items[0] && items[1] && items[2] && items[3] && items[5])
        out = PyTuple_Pack(6, items[0], items[1], items[2], items[3], items[4], items[5]);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(items[i]);
    return out;
}

static PyMethodDef methods[] = {
    {"fields", (PyCFunction)(void (*)(void))fast_fields, METH_FASTCALL,
     "Key, name and value of each header line of lines[1:], or None (see _fast.py)."},
    {"header_params", fast_header_params, METH_O,
     "';name[=value]...' as pairs, or None (see _fast.py)."},
    {"digest_params", fast_digest_params, METH_O,
     "A digest value's parameters, or None (see _fast.py)."},
    {"sip_uri", fast_sip_uri, METH_O,
     "A SIP URI's parts after its scheme, or None (see _fast.py)."},
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
