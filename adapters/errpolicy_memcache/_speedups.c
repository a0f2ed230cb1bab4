/* The session read's hot path in C: rendezvous ranking and one round of `gets`.
 *
 * Every start() ranks the nodes for its key and asks the home nodes for their copy;
 * in Python the glue around those system calls costs about as much as the raw get
 * the store is measured against (docs/memcache/benchmarks.md). The reference is the
 * Python code this replaces, which stays in use where this module is not built:
 *   rank()       <-> errpolicy_memcache._placement.rank (the splitmix64 mix per node)
 *   gets_round() <-> errpolicy_memcache._transport._fan_out reading one gets per
 *                    node with errpolicy_memcache._wire._read_gets (and, with agree,
 *                    _transport.agreed_gets comparing the values)
 *   line_round() <-> errpolicy_memcache._transport._fan_out reading one status line per
 *                    node (the line judged in Python by _wire's status readers)
 *   gets_reply() <-> errpolicy_memcache._aio_transport.parse_replies reading one gets
 *                    reply from the bytes an asyncio connection received so far
 *   plain_json() <-> the fast path of errpolicy_memcache._data.check_data (a True
 *                    from C means the Python walk would accept the data too)
 *   plain_payload() <-> the fast path of errpolicy_memcache._data.check_payload
 *                    (likewise: True means json.loads and the walk would accept it)
 *   slotted()    <-> errpolicy_memcache._outcome.node_results (and the Outcome it
 *                    reports): frozen slotted values made without their __init__
 *   timed_outcome() <-> errpolicy_memcache._outcome.py_timed_outcome (a wide read's
 *                    Outcome from its answer pattern's rows and this read's times)
 *   outcome_text() <-> errpolicy_memcache._outcome.py_outcome_text (str(Outcome))
 *   seal()       <-> errpolicy_memcache._envelope.encode (the signed record's bytes)
 *   seal_store() <-> encode() then _wire.set_ / _wire.add (the record and its request)
 * tests/memcache/test_speedups.py and test_sealed.py hold the two to the same answers.
 *
 * gets_round() works on blocking sockets whose timeouts the kernel enforces
 * (SO_RCVTIMEO / SO_SNDTIMEO, see _wire._set_read_timeout): a timeout is EAGAIN.
 * The GIL is released around each system call, as the socket module does.
 *
 * A round also keeps the operation's deadline, as _wire.Connection does: a node is
 * sent nothing once it passed ("skipped"), and a read after it only takes what has
 * already arrived ("timeout" if the reply is not complete). The reply grammar is
 * memcached's, strictly (single spaces, digits only), the same as _wire._read_gets.
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX: a slot's member type */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#define MAX_LINE 1024 /* _wire.MAX_LINE: a VALUE line is about 300 bytes at most */
#define MAX_KEY 250   /* memcached's key length limit */
#define DEFAULT_MAX_VALUE (1LL << 20) /* _wire.MAX_VALUE: memcached's default -I */
#define FIRST_CHUNK 65536
#define STACK_NODES 16 /* rounds and rankings up to this many nodes use no heap */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* no SIGPIPE flag here: Python ignores SIGPIPE anyway */
#endif

/* Per-module state (multi-phase init): _wire.NodeFailure, from setup(). */
typedef struct {
    PyObject *failure_type;
    PyObject *str_copy, *str_update, *str_digest; /* seal(): the hash objects' methods */
} ModuleState;

static inline ModuleState *
state_of(PyObject *module)
{
    return (ModuleState *)PyModule_GetState(module);
}

/* ---- ranking ---------------------------------------------------------------------- */

static inline unsigned long long
mix(unsigned long long x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

typedef struct {
    unsigned long long weight;
    Py_ssize_t index;
} Weighted;

/* Highest weight first, the given order among equal weights (as rank_python). */
static int
by_weight(const void *a, const void *b)
{
    const Weighted *x = a, *y = b;
    if (x->weight != y->weight) {
        return x->weight < y->weight ? 1 : -1;
    }
    return x->index < y->index ? -1 : (x->index > y->index);
}

static PyObject *
rank(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "rank(key_hash, seeds, nodes) takes 3 arguments");
        return NULL;
    }
    unsigned long long h = PyLong_AsUnsignedLongLong(args[0]);
    if (h == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *seeds = PySequence_Fast(args[1], "seeds must be a sequence");
    if (seeds == NULL) {
        return NULL;
    }
    PyObject *nodes = PySequence_Fast(args[2], "nodes must be a sequence");
    if (nodes == NULL) {
        Py_DECREF(seeds);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seeds);
    PyObject *result = NULL;
    Weighted on_stack[STACK_NODES];
    Weighted *weighted = on_stack;
    if (n != PySequence_Fast_GET_SIZE(nodes)) {
        PyErr_SetString(PyExc_ValueError, "rank: one seed per node");
        goto done;
    }
    if (n > STACK_NODES) { /* any count: a store may list hundreds of servers */
        weighted = PyMem_New(Weighted, (size_t)n);
        if (weighted == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long seed =
            PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seeds, i));
        if (seed == (unsigned long long)-1 && PyErr_Occurred()) {
            goto done;
        }
        Weighted w = {mix(h ^ seed), i};
        if (n > STACK_NODES) {
            weighted[i] = w;
            continue;
        }
        /* A few nodes (the usual store): insertion sort beats qsort's calls. */
        Py_ssize_t j = i;
        while (j > 0 && by_weight(&weighted[j - 1], &w) > 0) {
            weighted[j] = weighted[j - 1];
            j--;
        }
        weighted[j] = w;
    }
    if (n > STACK_NODES) {
        qsort(weighted, (size_t)n, sizeof(Weighted), by_weight);
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PySequence_Fast_GET_ITEM(nodes, weighted[i].index);
        PyList_SET_ITEM(result, i, Py_NewRef(node));
    }
done:
    if (weighted != on_stack) {
        PyMem_Free(weighted);
    }
    Py_DECREF(seeds);
    Py_DECREF(nodes);
    return result;
}

/* ---- session data that surely comes back the same from JSON --------------------- */

/* 1: the value is plain JSON within max_depth; 0: not surely (a subclass, a big int, a
   NaN, a tuple, a non-str key, too deep: the Python walk decides and names the path).
   Runs no Python code (borrowed references stay valid) and recurses at most
   max_depth + 1 levels. */
static int
plain_value(PyObject *value, int depth, int max_depth)
{
    if (depth > max_depth) {
        return 0;
    }
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type || type == &PyBool_Type || value == Py_None) {
        return 1;
    }
    if (type == &PyLong_Type) {
        int overflow;
        PyLong_AsLongLongAndOverflow(value, &overflow);
        return overflow == 0; /* a big int: Python checks it can be written */
    }
    if (type == &PyFloat_Type) {
        double x = PyFloat_AS_DOUBLE(value);
        return x - x == 0.0; /* finite: NaN and the infinities give NaN */
    }
    if (type == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(value, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key) || !plain_value(item, depth + 1, max_depth)) {
                return 0;
            }
        }
        return 1;
    }
    if (type == &PyList_Type) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            if (!plain_value(PyList_GET_ITEM(value, i), depth + 1, max_depth)) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

static PyObject *
plain_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "plain_json(data, max_depth) takes 2 arguments");
        return NULL;
    }
    long max_depth = PyLong_AsLong(args[1]);
    if (max_depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (max_depth < 0 || max_depth > 1000) { /* bounds the C recursion */
        PyErr_SetString(PyExc_ValueError, "plain_json: max_depth is 0 to 1000");
        return NULL;
    }
    if (Py_TYPE(args[0]) != &PyDict_Type) {
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong(plain_value(args[0], 1, (int)max_depth));
}

/* ---- stored session data that surely parses ------------------------------------- */

/* A scanner for the JSON this store writes (ASCII, compact, no huge numbers), that
   builds nothing: 1 if the bytes surely are a JSON object that json.loads and the
   walk accept (at most max_depth deep), 0 if unsure (anything unusual: non-ASCII, a
   number that could overflow, ...), and then Python decides. */
typedef struct {
    const unsigned char *p, *end;
    int max_depth;
} Scan;

static void
skip_space(Scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
    }
}

static int
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int
scan_string(Scan *s)
{
    s->p++; /* the opening quote */
    while (s->p < s->end) {
        unsigned char c = *s->p;
        if (c == '"') {
            s->p++;
            return 1;
        }
        if (c < 0x20 || c >= 0x80) {
            return 0; /* a control character (json refuses it) or non-ASCII: unsure */
        }
        if (c != '\\') {
            s->p++;
            continue;
        }
        if (s->end - s->p < 2) {
            return 0;
        }
        c = s->p[1];
        if (c == 'u') {
            if (s->end - s->p < 6 || !is_hex(s->p[2]) || !is_hex(s->p[3]) || !is_hex(s->p[4])
                || !is_hex(s->p[5])) {
                return 0;
            }
            s->p += 6;
        } else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
            s->p += 2;
        } else {
            return 0;
        }
    }
    return 0;
}

static int
scan_digits(Scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        s->p++;
    }
    return (int)(s->p - start);
}

/* json's number grammar; surely finite (at most 17 integer digits, an exponent of at
   most 290) and, for an int, far below Python's digit limit. */
static int
scan_number(Scan *s)
{
    if (*s->p == '-') {
        s->p++;
    }
    if (s->p == s->end) {
        return 0;
    }
    int digits;
    if (*s->p == '0') {
        s->p++;
        digits = 1;
    } else {
        digits = scan_digits(s);
        if (digits == 0 || digits > 17) {
            return 0;
        }
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (scan_digits(s) == 0) {
            return 0;
        }
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        int negative = 0;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) {
            negative = *s->p == '-';
            s->p++;
        }
        const unsigned char *start = s->p;
        int n = scan_digits(s);
        if (n == 0 || n > 3) {
            return 0;
        }
        int exponent = 0;
        for (int i = 0; i < n; i++) {
            exponent = exponent * 10 + (start[i] - '0');
        }
        if (!negative && exponent > 290) {
            return 0;
        }
    }
    return 1;
}

static int
scan_word(Scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) {
        return 0;
    }
    s->p += n;
    return 1;
}

static int scan_value(Scan *s, int depth);

static int
scan_container(Scan *s, int depth, unsigned char close)
{
    s->p++; /* the opening bracket */
    skip_space(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 1;
    }
    for (;;) {
        skip_space(s);
        if (close == '}') {
            if (s->p == s->end || *s->p != '"' || !scan_string(s)) {
                return 0;
            }
            skip_space(s);
            if (s->p == s->end || *s->p != ':') {
                return 0;
            }
            s->p++;
        }
        if (!scan_value(s, depth + 1)) {
            return 0;
        }
        skip_space(s);
        if (s->p == s->end) {
            return 0;
        }
        if (*s->p == close) {
            s->p++;
            return 1;
        }
        if (*s->p != ',') {
            return 0;
        }
        s->p++;
    }
}

static int
scan_value(Scan *s, int depth)
{
    if (depth > s->max_depth) {
        return 0;
    }
    skip_space(s);
    if (s->p == s->end) {
        return 0;
    }
    switch (*s->p) {
    case '{':
        return scan_container(s, depth, '}');
    case '[':
        return scan_container(s, depth, ']');
    case '"':
        return scan_string(s);
    case 't':
        return scan_word(s, "true");
    case 'f':
        return scan_word(s, "false");
    case 'n':
        return scan_word(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
            return scan_number(s);
        }
        return 0;
    }
}

static PyObject *
plain_payload(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "plain_payload(payload, max_depth) takes 2 arguments");
        return NULL;
    }
    long max_depth = PyLong_AsLong(args[1]);
    if (max_depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (max_depth < 0 || max_depth > 1000) { /* bounds the C recursion */
        PyErr_SetString(PyExc_ValueError, "plain_payload: max_depth is 0 to 1000");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[0], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Scan s = {payload.buf, (const unsigned char *)payload.buf + payload.len, (int)max_depth};
    int plain;
    Py_BEGIN_ALLOW_THREADS
    skip_space(&s);
    plain = s.p < s.end && *s.p == '{' && scan_value(&s, 1);
    if (plain) {
        skip_space(&s);
        plain = s.p == s.end;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&payload);
    return PyBool_FromLong(plain);
}

/* ---- one round of gets ------------------------------------------------------------ */

typedef struct {
    int fd;
    int failed;               /* 1 once kind/detail are set */
    const char *kind;         /* refused, timeout, closed, error or skipped */
    char detail[96];
    char *buf;
    Py_ssize_t len, cap;
    Py_ssize_t value_at, value_len; /* value_len < 0: a miss */
    unsigned long long cas;
} NodeRead;

/* What every node of one round shares: the operation's deadline and the value limit. */
typedef struct {
    int has_deadline;
    struct timespec deadline; /* CLOCK_MONOTONIC */
    long long max_value;
} Round;

static int
past_deadline(const Round *round)
{
    if (!round->has_deadline) {
        return 0;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > round->deadline.tv_sec
           || (now.tv_sec == round->deadline.tv_sec && now.tv_nsec >= round->deadline.tv_nsec);
}

static void
fail(NodeRead *node, const char *kind, const char *detail)
{
    node->failed = 1;
    node->kind = kind;
    snprintf(node->detail, sizeof(node->detail), "%s", detail);
}

static void
fail_errno(NodeRead *node, int err, int late)
{
    const char *kind;
    switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case ETIMEDOUT:
        fail(node, "timeout", late ? "operation deadline passed" : "timed out");
        return;
    case ECONNREFUSED:
        kind = "refused";
        break;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        kind = "closed";
        break;
    default:
        kind = "refused"; /* unreachable network or host: counted like a refusal */
    }
    fail(node, kind, strerror(err));
}

/* Wait out EINTR the way the socket module does: run the signal handlers, and stop
   if one raised. Returns -1 with a Python exception set, 0 to retry. */
static int
interrupted(void)
{
    return PyErr_CheckSignals() < 0 ? -1 : 0;
}

/* One send or recv on the node's socket with the GIL released, retried after EINTR
   once the signal handlers ran. Past the deadline it does not wait: only what can
   move at once moves. >0: bytes moved; 0: the peer closed (recv); -1: a node failure
   was recorded; -2: a handler raised (exception set). */
static ssize_t
transfer(NodeRead *node, const Round *round, int sending, char *buf, size_t size)
{
    for (;;) {
        ssize_t moved;
        int err = 0;
        int late = past_deadline(round);
        int flags = late ? MSG_DONTWAIT : 0;
        Py_BEGIN_ALLOW_THREADS
        moved = sending ? send(node->fd, buf, size, flags | MSG_NOSIGNAL)
                        : recv(node->fd, buf, size, flags);
        if (moved < 0) {
            err = errno;
        }
        Py_END_ALLOW_THREADS
        if (moved >= 0) {
            return moved;
        }
        if (err != EINTR) {
            fail_errno(node, err, late);
            return -1;
        }
        if (interrupted() < 0) {
            return -2;
        }
    }
}

/* Send all of request; 0 on success or node failure, -1 with an exception set. */
static int
send_all(NodeRead *node, const Round *round, const char *data, Py_ssize_t size)
{
    if (past_deadline(round)) { /* not this node's fault: nothing was asked of it */
        fail(node, "skipped", "operation deadline passed");
        return 0;
    }
    while (size > 0) {
        ssize_t sent = transfer(node, round, 1, (char *)data, (size_t)size);
        if (sent < 0) {
            return sent == -2 ? -1 : 0;
        }
        data += sent;
        size -= sent;
    }
    return 0;
}

/* One recv into the node's buffer, growing it to hold at least `want` bytes.
   1: got bytes; 0: node failure recorded; -1: exception set. */
static int
fill(NodeRead *node, const Round *round, Py_ssize_t want)
{
    if (want < node->len + FIRST_CHUNK) {
        want = node->len + FIRST_CHUNK;
    }
    if (want > node->cap) {
        char *grown = PyMem_Realloc(node->buf, (size_t)want);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        node->buf = grown;
        node->cap = want;
    }
    ssize_t got =
        transfer(node, round, 0, node->buf + node->len, (size_t)(node->cap - node->len));
    if (got > 0) {
        node->len += got;
        return 1;
    }
    if (got == 0) {
        fail(node, "closed", "connection closed by the server");
        return 0;
    }
    return got == -2 ? -1 : 0;
}

/* Digits only (memcached's grammar: no sign, no space, no '_'), at most `limit`.
   Returns the position after the number, or NULL. */
static const char *
parse_number(const char *s, const char *end, unsigned long long limit,
             unsigned long long *out)
{
    unsigned long long value = 0;
    const char *p = s;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned long long digit = (unsigned long long)(*p - '0');
        if (value > (limit - digit) / 10) {
            return NULL; /* over the limit (or 64 bits) */
        }
        value = value * 10 + digit;
        p++;
    }
    if (p == s || p - s > 20) {
        return NULL;
    }
    *out = value;
    return p;
}

static int
starts_with(const char *s, Py_ssize_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return (size_t)n >= p && memcmp(s, prefix, p) == 0;
}

static void
unexpected(NodeRead *node, const char *line, Py_ssize_t n)
{
    char shown[48];
    Py_ssize_t k = n < 0 ? 0 : (n < 40 ? n : 40);
    for (Py_ssize_t i = 0; i < k; i++) {
        shown[i] = (line[i] >= 32 && line[i] < 127) ? line[i] : '?';
    }
    shown[k] = '\0';
    if (starts_with(line, n, "SERVER_ERROR")) {
        /* A proxy's backend is down: a node failure, as in _wire._check_error. */
        fail(node, "server_error", shown);
        return;
    }
    if (starts_with(line, n, "CLIENT_ERROR") || (n == 5 && memcmp(line, "ERROR", 5) == 0)) {
        fail(node, "error", shown);
        return;
    }
    char detail[80];
    snprintf(detail, sizeof(detail), "unexpected reply '%s'", shown);
    fail(node, "error", detail);
}

/* "VALUE <key> <flags> <bytes> <cas>", single spaces, as _wire._VALUE_LINE. */
static int
parse_value_line(const char *line, Py_ssize_t n, unsigned long long *size,
                 unsigned long long *cas)
{
    const char *end = line + n;
    if (!starts_with(line, n, "VALUE ")) {
        return -1;
    }
    const char *p = line + 6;
    const char *key = p;
    while (p < end && *p > ' ' && *p < 127) {
        p++;
    }
    if (p == key || p - key > MAX_KEY || p == end || *p != ' ') {
        return -1;
    }
    unsigned long long flags;
    p = parse_number(p + 1, end, 0xFFFFFFFFULL, &flags);
    if (p == NULL || p == end || *p != ' ') {
        return -1;
    }
    p = parse_number(p + 1, end, ~0ULL, size);
    if (p == NULL || p == end || *p != ' ') {
        return -1;
    }
    p = parse_number(p + 1, end, ~0ULL, cas);
    return p == end ? 0 : -1;
}

/* Read and check one reply to `gets`: 0 (result or failure recorded) or -1. */
static int
read_reply(NodeRead *node, const Round *round)
{
    const char *eol;
    for (;;) {
        eol = node->len ? memmem(node->buf, (size_t)node->len, "\r\n", 2) : NULL;
        if (eol != NULL) {
            break;
        }
        if (node->len > MAX_LINE + 1) { /* no line end within a line's length */
            fail(node, "error", "reply line too long");
            return 0;
        }
        int r = fill(node, round, 0);
        if (r <= 0) {
            return r;
        }
    }
    Py_ssize_t line_len = eol - node->buf;
    const char *line = node->buf;
    if (line_len > MAX_LINE) {
        fail(node, "error", "reply line too long");
        return 0;
    }
    if (line_len == 3 && memcmp(line, "END", 3) == 0) {
        if (node->len != 5) {
            fail(node, "error", "unexpected bytes after the reply");
            return 0;
        }
        node->value_len = -1;
        return 0;
    }
    unsigned long long size, cas;
    if (parse_value_line(line, line_len, &size, &cas) < 0) {
        unexpected(node, line, line_len);
        return 0;
    }
    if (size > (unsigned long long)round->max_value) {
        fail(node, "error", "value too large");
        return 0;
    }
    Py_ssize_t value_at = line_len + 2;
    Py_ssize_t total = value_at + (Py_ssize_t)size + 7; /* value, CRLF, "END\r\n" */
    while (node->len < total) {
        int r = fill(node, round, total);
        if (r <= 0) {
            return r;
        }
    }
    if (node->len != total) {
        fail(node, "error", "unexpected bytes after the reply");
        return 0;
    }
    if (memcmp(node->buf + value_at + size, "\r\nEND\r\n", 7) != 0) {
        fail(node, "error", "malformed value block");
        return 0;
    }
    node->value_at = value_at;
    node->value_len = (Py_ssize_t)size;
    node->cas = cas;
    return 0;
}

/* One status line (STORED, NOT_STORED, an error line...) as the whole reply: its bytes
   are left to Python to judge (_wire's status readers), so the twins agree. */
static int
read_line_reply(NodeRead *node, const Round *round)
{
    const char *eol;
    for (;;) {
        eol = node->len ? memmem(node->buf, (size_t)node->len, "\r\n", 2) : NULL;
        if (eol != NULL) {
            break;
        }
        if (node->len > MAX_LINE + 1) {
            fail(node, "error", "reply line too long");
            return 0;
        }
        int r = fill(node, round, 0);
        if (r <= 0) {
            return r;
        }
    }
    Py_ssize_t line_len = eol - node->buf;
    if (line_len > MAX_LINE) {
        fail(node, "error", "reply line too long");
        return 0;
    }
    if (node->len != line_len + 2) {
        fail(node, "error", "unexpected bytes after the reply");
        return 0;
    }
    node->value_at = 0;
    node->value_len = line_len;
    return 0;
}

static PyObject *
result_of(PyObject *failure_type, NodeRead *node)
{
    if (node->failed) {
        return PyObject_CallFunction(failure_type, "ss", node->kind, node->detail);
    }
    if (node->value_len < 0) {
        Py_RETURN_NONE;
    }
    PyObject *value = PyBytes_FromStringAndSize(node->buf + node->value_at, node->value_len);
    if (value == NULL) {
        return NULL;
    }
    PyObject *cas = PyLong_FromUnsignedLongLong(node->cas);
    if (cas == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, value, cas);
    Py_DECREF(value);
    Py_DECREF(cas);
    return pair;
}

/* The round's deadline from `timeout` (seconds left, None: none) and its value limit. */
static int
round_of(Round *round, PyObject *timeout, PyObject *max_value)
{
    round->has_deadline = 0;
    round->max_value = DEFAULT_MAX_VALUE;
    if (timeout != NULL && timeout != Py_None) {
        double left = PyFloat_AsDouble(timeout);
        if (left == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        if (left != left) {
            PyErr_SetString(PyExc_ValueError, "gets_round: timeout is NaN");
            return -1;
        }
        if (left < 0) {
            left = 0;
        }
        if (left > 1e9) {
            left = 1e9; /* far enough: no overflow of the timespec */
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long whole = (long long)left;
        long long nanos = now.tv_nsec + (long long)((left - (double)whole) * 1e9);
        round->deadline.tv_sec = now.tv_sec + (time_t)whole + (time_t)(nanos / 1000000000LL);
        round->deadline.tv_nsec = (long)(nanos % 1000000000LL);
        round->has_deadline = 1;
    }
    if (max_value != NULL && max_value != Py_None) {
        long long limit = PyLong_AsLongLong(max_value);
        if (limit == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (limit < 0 || limit > (1LL << 40)) {
            PyErr_SetString(PyExc_ValueError, "gets_round: max_value is out of range");
            return -1;
        }
        round->max_value = limit;
    }
    return 0;
}

static PyObject *run_round(PyObject *module, PyObject *fds_arg, PyObject *request_arg,
                           int agree, int lines, Round *round);

static PyObject *
gets_round(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError,
                        "gets_round(fds, request, agree=False, timeout=None, max_value=None) "
                        "takes 2 to 5 arguments");
        return NULL;
    }
    int agree = 0;
    if (nargs >= 3 && (agree = PyObject_IsTrue(args[2])) < 0) {
        return NULL;
    }
    Round round;
    if (round_of(&round, nargs >= 4 ? args[3] : NULL, nargs >= 5 ? args[4] : NULL) < 0) {
        return NULL;
    }
    return run_round(module, args[0], args[1], agree, 0, &round);
}

static PyObject *
line_round(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "line_round(fds, request, timeout=None) takes 2 or 3 arguments");
        return NULL;
    }
    Round round;
    if (round_of(&round, nargs >= 3 ? args[2] : NULL, NULL) < 0) {
        return NULL;
    }
    return run_round(module, args[0], args[1], 0, 1, &round);
}

/* Send request to every socket, then read one reply from each: a gets reply, or with
   lines one status line. */
static PyObject *
run_round(PyObject *module, PyObject *fds_arg, PyObject *request_arg, int agree, int lines,
          Round *round_ptr)
{
    Round round = *round_ptr;
    PyObject *failure_type = state_of(module)->failure_type;
    if (failure_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gets_round: setup() was not called");
        return NULL;
    }
    PyObject *fds = PySequence_Fast(fds_arg, "fds must be a sequence of ints");
    if (fds == NULL) {
        return NULL;
    }
    Py_buffer request;
    if (PyObject_GetBuffer(request_arg, &request, PyBUF_SIMPLE) < 0) {
        Py_DECREF(fds);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fds);
    PyObject *result = NULL;
    NodeRead on_stack[STACK_NODES];
    NodeRead *nodes = on_stack;
    if (n > STACK_NODES) { /* any count: read_all_nodes asks every server */
        nodes = PyMem_New(NodeRead, (size_t)n);
        if (nodes == NULL) {
            PyErr_NoMemory();
            n = 0;
            goto done;
        }
    }
    memset(nodes, 0, sizeof(NodeRead) * (size_t)(n > 0 ? n : 0));
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(fds, i));
        if (fd == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (fd < 0 || fd > 0x7fffffff) {
            PyErr_SetString(PyExc_ValueError, "gets_round: a file descriptor is out of range");
            goto done;
        }
        nodes[i].fd = (int)fd;
    }
    /* Every node gets its request before any reply is read: one round trip in all. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (send_all(&nodes[i], &round, request.buf, request.len) < 0) {
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!nodes[i].failed
            && (lines ? read_line_reply(&nodes[i], &round) : read_reply(&nodes[i], &round)) < 0) {
            goto done;
        }
    }
    if (agree && n > 0) {
        /* The usual read: every node holds the same bytes. Then the value alone. */
        Py_ssize_t i = 0;
        for (; i < n; i++) {
            if (nodes[i].failed || nodes[i].value_len < 0
                || nodes[i].value_len != nodes[0].value_len
                || memcmp(nodes[i].buf + nodes[i].value_at, nodes[0].buf + nodes[0].value_at,
                          (size_t)nodes[0].value_len) != 0) {
                break;
            }
        }
        if (i == n) {
            result = PyBytes_FromStringAndSize(nodes[0].buf + nodes[0].value_at,
                                               nodes[0].value_len);
            goto done;
        }
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = lines && !nodes[i].failed
                             ? PyBytes_FromStringAndSize(nodes[i].buf, nodes[i].value_len)
                             : result_of(failure_type, &nodes[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        PyMem_Free(nodes[i].buf);
    }
    if (nodes != on_stack) {
        PyMem_Free(nodes);
    }
    PyBuffer_Release(&request);
    Py_DECREF(fds);
    return result;
}

/* ---- frozen slotted values --------------------------------------------------------- */

/* The offsets of `slots` (cls's own writable T_OBJECT_EX member descriptors, at most
   16) in offsets; their number, or -1 with an exception set. */
static Py_ssize_t
slot_offsets(PyObject *cls_arg, PyObject *slots, Py_ssize_t *offsets, const char *who)
{
    if (!PyType_Check(cls_arg) || !PyTuple_Check(slots)) {
        PyErr_Format(PyExc_TypeError, "%s: cls must be a type and slots a tuple", who);
        return -1;
    }
    PyTypeObject *cls = (PyTypeObject *)cls_arg;
    Py_ssize_t width = PyTuple_GET_SIZE(slots);
    if (width > 16) {
        PyErr_Format(PyExc_ValueError, "%s: at most 16 slots", who);
        return -1;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        if (!Py_IS_TYPE(slot, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s: slots must be member descriptors", who);
            return -1;
        }
        PyMemberDescrObject *member = (PyMemberDescrObject *)slot;
        if (member->d_member->type != T_OBJECT_EX || (member->d_member->flags & READONLY) ||
            !PyType_IsSubtype(cls, PyDescr_TYPE(member))) {
            PyErr_Format(PyExc_TypeError, "%s: a slot that is not a writable slot of cls", who);
            return -1;
        }
        offsets[i] = member->d_member->offset;
    }
    return width;
}

/* A new cls (tp_alloc) with values[i] in the slot at offsets[i], for each i < width. */
static PyObject *
made_slotted(PyTypeObject *cls, const Py_ssize_t *offsets, PyObject *const *values, Py_ssize_t width)
{
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject **addr = (PyObject **)((char *)obj + offsets[i]);
        Py_XSETREF(*addr, Py_NewRef(values[i]));
    }
    return obj;
}

/* slotted(cls, slots, rows): one cls per row, made as object.__new__(cls) then
   slots[i].__set__(obj, row[i]) for each i would make it: the values of a failover
   notice (a NodeResult per node, one Outcome) without a Python call per field.
   slots are cls's own member descriptors (T_OBJECT_EX), checked on every call. */
static PyObject *
slotted(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "slotted(cls, slots, rows) takes 3 arguments");
        return NULL;
    }
    PyObject *rows = args[2];
    Py_ssize_t offsets[16];
    Py_ssize_t width = slot_offsets(args[0], args[1], offsets, "slotted");
    if (width < 0) {
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *seq = PySequence_Fast(rows, "slotted: rows must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *made = PyTuple_New(count);
    if (made == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *row = PySequence_Fast_GET_ITEM(seq, r);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != width) {
            PyErr_SetString(PyExc_TypeError, "slotted: each row must be a tuple of one value per slot");
            goto fail;
        }
        PyObject *obj = made_slotted(cls, offsets, &PyTuple_GET_ITEM(row, 0), width);
        if (obj == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(made, r, obj);
    }
    Py_DECREF(seq);
    return made;
fail:
    Py_DECREF(seq);
    Py_DECREF(made);
    return NULL;
}

/* timed_outcome(result_cls, result_slots, outcome_cls, outcome_slots, head, rows, at,
   times, version, elapsed) <-> _outcome.py_timed_outcome: the Outcome of a read whose
   rows are known beforehand (a wide read's answer pattern), with this read's times.
   head: (operation, kind, flags, served_by, key); rows: one (node, command, status,
   index) per node, its NodeResult's elapsed `at` where index < 0, else times[index],
   and its detail "". The outage read reports one per request: one call, not a row
   tuple per node and two slotted() calls. */
static PyObject *
timed_outcome(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError,
                        "timed_outcome(result_cls, result_slots, outcome_cls, outcome_slots, "
                        "head, rows, at, times, version, elapsed) takes 10 arguments");
        return NULL;
    }
    Py_ssize_t result_offsets[16], outcome_offsets[16];
    if (slot_offsets(args[0], args[1], result_offsets, "timed_outcome") != 5
        || slot_offsets(args[2], args[3], outcome_offsets, "timed_outcome") != 8) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError,
                            "timed_outcome: 5 result slots and 8 outcome slots");
        }
        return NULL;
    }
    PyObject *head = args[4], *rows = args[5], *at = args[6], *times = args[7];
    if (!PyTuple_Check(head) || PyTuple_GET_SIZE(head) != 5 || !PyTuple_Check(rows)
        || !PyList_Check(times)) {
        PyErr_SetString(PyExc_TypeError,
                        "timed_outcome: head must be a 5-tuple, rows a tuple and times a list");
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(rows);
    PyObject *results = PyTuple_New(count);
    PyObject *empty = PyUnicode_New(0, 0);
    if (results == NULL || empty == NULL) {
        goto fail;
    }
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *row = PyTuple_GET_ITEM(rows, r);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 4) {
            PyErr_SetString(PyExc_TypeError,
                            "timed_outcome: each row must be (node, command, status, index)");
            goto fail;
        }
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(row, 3));
        if (index == -1 && PyErr_Occurred()) {
            goto fail;
        }
        PyObject *elapsed = at;
        if (index >= 0) {
            if (index >= PyList_GET_SIZE(times)) {
                PyErr_SetString(PyExc_IndexError, "timed_outcome: a row's index past times");
                goto fail;
            }
            elapsed = PyList_GET_ITEM(times, index);
        }
        PyObject *values[5] = {PyTuple_GET_ITEM(row, 0), PyTuple_GET_ITEM(row, 1),
                               PyTuple_GET_ITEM(row, 2), elapsed, empty};
        PyObject *obj = made_slotted((PyTypeObject *)args[0], result_offsets, values, 5);
        if (obj == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(results, r, obj);
    }
    PyObject *fields[8] = {PyTuple_GET_ITEM(head, 0), PyTuple_GET_ITEM(head, 1),
                           PyTuple_GET_ITEM(head, 2), PyTuple_GET_ITEM(head, 3),
                           results, PyTuple_GET_ITEM(head, 4), args[8], args[9]};
    PyObject *outcome = made_slotted((PyTypeObject *)args[2], outcome_offsets, fields, 8);
    Py_DECREF(results);
    Py_DECREF(empty);
    return outcome;
fail:
    Py_XDECREF(results);
    Py_XDECREF(empty);
    return NULL;
}

/* outcome_text(fields, operation, kind, served_by, nodes, key) <->
   _outcome.py_outcome_text: an Outcome's str(), the message of every notice (a
   failover read logs one per request; in Python about 12,000 instructions). fields:
   NodeResult's node, command and status member descriptors (read as slots). Each part
   as str() gives it (a StrEnum: its value), the text made once from the parts. */
#define TEXT_STACK 64

static PyObject *text_parts[7]; /* interned: " " "=" "; " " key=" " served_by=" " [" "]" */

/* Append str(value) (a new reference) to parts; -1 on error. */
static int
text_part(PyObject **parts, Py_ssize_t *n, PyObject *value)
{
    PyObject *shown = PyUnicode_Check(value) ? Py_NewRef(value) : PyObject_Str(value);
    if (shown == NULL) {
        return -1;
    }
    parts[(*n)++] = shown;
    return 0;
}

static PyObject *
outcome_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *names[7] = {" ", "=", "; ", " key=", " served_by=", " [", "]"};
    if (nargs != 6 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "outcome_text(fields, operation, kind, served_by, nodes, key): "
                        "fields a tuple of 3 member descriptors");
        return NULL;
    }
    Py_ssize_t offsets[3];
    PyTypeObject *owner = NULL;
    for (int f = 0; f < 3; f++) {
        PyObject *slot = PyTuple_GET_ITEM(args[0], f);
        if (!Py_IS_TYPE(slot, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)slot)->d_member->type != T_OBJECT_EX ||
            (owner != NULL && PyDescr_TYPE(slot) != owner)) {
            PyErr_SetString(PyExc_TypeError, "outcome_text: fields must be slots of one class");
            return NULL;
        }
        owner = PyDescr_TYPE(slot);
        offsets[f] = ((PyMemberDescrObject *)slot)->d_member->offset;
    }
    if (text_parts[0] == NULL) {
        for (int i = 0; i < 7; i++) {
            text_parts[i] = PyUnicode_InternFromString(names[i]);
            if (text_parts[i] == NULL) {
                return NULL;
            }
        }
    }
    PyObject *operation = args[1], *kind = args[2], *served = args[3], *key = args[5];
    PyObject *seq = PySequence_Fast(args[4], "outcome_text: nodes must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Py_ssize_t room = 10 + 6 * count, n = 0;
    PyObject *stack[TEXT_STACK];
    PyObject **parts = room <= TEXT_STACK ? stack : PyMem_New(PyObject *, room);
    PyObject *result = NULL;
    if (parts == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    int shown = served == Py_None ? 0 : PyObject_IsTrue(served);
    if (shown < 0 || text_part(parts, &n, operation)) {
        goto done;
    }
    parts[n++] = Py_NewRef(text_parts[0]);
    if (text_part(parts, &n, kind)) {
        goto done;
    }
    if (shown) {
        parts[n++] = Py_NewRef(text_parts[4]);
        if (text_part(parts, &n, served)) {
            goto done;
        }
    }
    parts[n++] = Py_NewRef(text_parts[3]);
    if (text_part(parts, &n, key)) {
        goto done;
    }
    parts[n++] = Py_NewRef(text_parts[5]);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *r = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyObject_TypeCheck(r, owner)) {
            PyErr_SetString(PyExc_TypeError, "outcome_text: nodes must be NodeResults");
            goto done;
        }
        if (i) {
            parts[n++] = Py_NewRef(text_parts[2]);
        }
        for (int f = 0; f < 3; f++) {
            PyObject *value = *(PyObject **)((char *)r + offsets[f]);
            if (value == NULL) {
                PyErr_SetString(PyExc_AttributeError, "outcome_text: a NodeResult field unset");
                goto done;
            }
            if (text_part(parts, &n, value)) {
                goto done;
            }
            if (f < 2) {
                parts[n++] = Py_NewRef(text_parts[f == 0 ? 0 : 1]);
            }
        }
    }
    parts[n++] = Py_NewRef(text_parts[6]);
    Py_ssize_t length = 0;
    Py_UCS4 widest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        length += PyUnicode_GET_LENGTH(parts[i]);
        Py_UCS4 most = PyUnicode_MAX_CHAR_VALUE(parts[i]);
        if (most > widest) {
            widest = most;
        }
    }
    result = PyUnicode_New(length, widest);
    if (result == NULL) {
        goto done;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = PyUnicode_GET_LENGTH(parts[i]);
        if (PyUnicode_CopyCharacters(result, at, parts[i], 0, size) < 0) {
            Py_CLEAR(result);
            goto done;
        }
        at += size;
    }
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(parts[i]);
    }
    if (parts != stack) {
        PyMem_Free(parts);
    }
    Py_DECREF(seq);
    return result;
}

/* ---- the signed record (seal) ------------------------------------------------------ */

/* seal() <-> errpolicy_memcache._envelope.encode: the same bytes, b"EP2", the MAC, the
   37-byte header (struct ">QddIB8s") and the payload. The MAC is HMAC-SHA256 from the
   keyring's precomputed inner and outer hashlib states (their copy/update/digest,
   called from here: the OpenSSL under hashlib is not ours to link). Only the usual
   record is sealed here; any field encode() would refuse or convert (a version or TTL
   out of range, a timestamp not finite or negative, a writer id not 1-8 ASCII
   characters, a non-ASCII key, a payload not bytes) gives None, and the Python twin
   decides, with its own error. */

#define SEAL_MAGIC "EP2"
#define SEAL_MAC 32
#define SEAL_HEADER 37 /* struct.calcsize(">QddIB8s") */

static void
put_u64(unsigned char *out, unsigned long long v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* v in decimal at out (at most 20 digits, no terminator); returns how many digits. */
static int
put_decimal(char *out, unsigned long long v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    return n;
}

/* A finite timestamp >= 0 as struct's ">d" packs it; 0 with no error set: not one. */
static int
put_time(unsigned char *out, PyObject *value)
{
    double t;
    if (PyFloat_CheckExact(value)) {
        t = PyFloat_AS_DOUBLE(value);
    }
    else if (PyLong_CheckExact(value)) {
        t = PyLong_AsDouble(value);
        if (t == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    }
    else {
        return 0;
    }
    if (!(isfinite(t) && t >= 0)) {
        return 0;
    }
    unsigned long long bits;
    memcpy(&bits, &t, sizeof bits);
    put_u64(out, bits);
    return 1;
}

/* h.method(arg) (arg NULL: no argument), a new reference or NULL with an error set. */
static PyObject *
call_method(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args, (arg ? 2 : 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

/* The 32-byte HMAC of message from the inner and outer states, or NULL (error set). */
static PyObject *
hmac_of(ModuleState *st, PyObject *inner, PyObject *outer, PyObject *message)
{
    PyObject *digest = NULL, *done = NULL;
    PyObject *h = call_method(inner, st->str_copy, NULL);
    if (h == NULL) {
        return NULL;
    }
    done = call_method(h, st->str_update, message);
    if (done != NULL) {
        Py_DECREF(done);
        digest = call_method(h, st->str_digest, NULL);
    }
    Py_DECREF(h);
    if (digest == NULL) {
        return NULL;
    }
    PyObject *o = call_method(outer, st->str_copy, NULL);
    PyObject *mac = NULL;
    if (o != NULL) {
        done = call_method(o, st->str_update, digest);
        if (done != NULL) {
            Py_DECREF(done);
            mac = call_method(o, st->str_digest, NULL);
        }
        Py_DECREF(o);
    }
    Py_DECREF(digest);
    if (mac != NULL && !(PyBytes_CheckExact(mac) && PyBytes_GET_SIZE(mac) == SEAL_MAC)) {
        Py_DECREF(mac);
        PyErr_SetString(PyExc_TypeError, "seal: the hash states must give 32-byte digests");
        return NULL;
    }
    return mac;
}

/* The record of args[0..8] (as seal() takes them) sealed into a new bytes at *blob_out.
   Returns 1 when sealed, 0 when the twin must decide (no error set), -1 on an error. */
static int
seal_into(PyObject *module, PyObject *const *args, PyObject **blob_out)
{
    PyObject *key = args[2], *version = args[3], *writer = args[4], *ttl = args[7];
    PyObject *payload = args[8];
    unsigned char header[SEAL_HEADER];
    *blob_out = NULL;
    if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_ASCII(key) || !PyLong_CheckExact(version)
        || !PyLong_CheckExact(ttl) || !PyUnicode_CheckExact(writer)
        || !PyUnicode_IS_ASCII(writer) || PyUnicode_GET_LENGTH(writer) > 8
        || !(payload == Py_None || PyBytes_CheckExact(payload))) {
        return 0;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(version);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or over 64 bits: struct.error in the twin */
        return 0;
    }
    unsigned long long life = PyLong_AsUnsignedLongLong(ttl);
    if ((life == (unsigned long long)-1 && PyErr_Occurred()) || life > 0xffffffffULL) {
        PyErr_Clear();
        return 0;
    }
    put_u64(header, v);
    if (!put_time(header + 8, args[5]) || !put_time(header + 16, args[6])) {
        return 0;
    }
    header[24] = (unsigned char)(life >> 24);
    header[25] = (unsigned char)(life >> 16);
    header[26] = (unsigned char)(life >> 8);
    header[27] = (unsigned char)life;
    header[28] = payload == Py_None ? 1 : 0;
    memset(header + 29, 0, 8);
    memcpy(header + 29, PyUnicode_DATA(writer), (size_t)PyUnicode_GET_LENGTH(writer));

    Py_ssize_t key_size = PyUnicode_GET_LENGTH(key);
    Py_ssize_t data_size = payload == Py_None ? 0 : PyBytes_GET_SIZE(payload);
    Py_ssize_t body_size = SEAL_HEADER + data_size;
    /* What the MAC covers after the domain tag (in the inner state): key, NUL, body. */
    PyObject *message = PyBytes_FromStringAndSize(NULL, key_size + 1 + body_size);
    if (message == NULL) {
        return -1;
    }
    char *m = PyBytes_AS_STRING(message);
    memcpy(m, PyUnicode_DATA(key), (size_t)key_size);
    m[key_size] = '\0';
    char *body = m + key_size + 1;
    memcpy(body, header, SEAL_HEADER);
    if (data_size) {
        memcpy(body + SEAL_HEADER, PyBytes_AS_STRING(payload), (size_t)data_size);
    }
    PyObject *mac = hmac_of(state_of(module), args[0], args[1], message);
    if (mac == NULL) {
        Py_DECREF(message);
        return -1;
    }
    PyObject *blob = PyBytes_FromStringAndSize(NULL, 3 + SEAL_MAC + body_size);
    if (blob != NULL) {
        char *out = PyBytes_AS_STRING(blob);
        memcpy(out, SEAL_MAGIC, 3);
        memcpy(out + 3, PyBytes_AS_STRING(mac), SEAL_MAC);
        memcpy(out + 3 + SEAL_MAC, body, (size_t)body_size);
    }
    Py_DECREF(mac);
    Py_DECREF(message);
    if (blob == NULL) {
        return -1;
    }
    *blob_out = blob;
    return 1;
}

static PyObject *
seal(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "seal(inner, outer, key, version, writer, created, written, ttl, "
                        "payload) takes 9 arguments");
        return NULL;
    }
    PyObject *blob;
    int sealed = seal_into(module, args, &blob);
    if (sealed < 0) {
        return NULL;
    }
    if (sealed == 0) {
        Py_RETURN_NONE;
    }
    return blob;
}

/* The expiry of a store request as an int in 0..2**31-1 at *when: 1, or 0 for any
   other value (no error set: the twin decides it). */
static int
expiry_of(PyObject *expiry, long *when)
{
    if (!PyLong_CheckExact(expiry)) {
        return 0;
    }
    *when = PyLong_AsLong(expiry);
    if ((*when == -1 && PyErr_Occurred()) || *when < 0 || *when > 0x7fffffffL) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The memcached store request writing blob: "<verb> <key> 0 <expiry> <size>\r\n<blob>\r\n"
   (key an ASCII str, checked by seal_into), or NULL with an error set. */
static PyObject *
store_request(const char *verb, Py_ssize_t verb_size, PyObject *key, long when, PyObject *blob)
{
    Py_ssize_t key_size = PyUnicode_GET_LENGTH(key);
    Py_ssize_t size = PyBytes_GET_SIZE(blob);
    char numbers[64]; /* " 0 <expiry> <size>\r\n", without snprintf (~1,100 instructions) */
    int n = 0;
    numbers[n++] = ' ';
    numbers[n++] = '0';
    numbers[n++] = ' ';
    n += put_decimal(numbers + n, (unsigned long long)when);
    numbers[n++] = ' ';
    n += put_decimal(numbers + n, (unsigned long long)size);
    numbers[n++] = '\r';
    numbers[n++] = '\n';
    Py_ssize_t line = verb_size + 1 + key_size + n;
    PyObject *request = PyBytes_FromStringAndSize(NULL, line + size + 2);
    if (request == NULL) {
        return NULL;
    }
    char *r = PyBytes_AS_STRING(request);
    memcpy(r, verb, (size_t)verb_size);
    r[verb_size] = ' ';
    memcpy(r + verb_size + 1, PyUnicode_DATA(key), (size_t)key_size);
    memcpy(r + verb_size + 1 + key_size, numbers, (size_t)n);
    memcpy(r + line, PyBytes_AS_STRING(blob), (size_t)size);
    memcpy(r + line + size, "\r\n", 2);
    return request;
}

/* seal_store() <-> seal() and then _wire.set_ / _wire.add: the record sealed and the
   memcached store request that writes it ("<verb> <key> 0 <expiry> <size>\r\n<blob>\r\n"),
   as (blob, request); None as seal() gives it, or for an expiry that is not an int in
   0..2**31-1. */
static PyObject *
seal_store(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "seal_store(verb, expiry, inner, outer, key, version, writer, created, "
                        "written, ttl, payload) takes 11 arguments");
        return NULL;
    }
    PyObject *verb = args[0];
    if (!PyBytes_CheckExact(verb)) {
        PyErr_SetString(PyExc_TypeError, "seal_store: verb must be bytes");
        return NULL;
    }
    long when;
    if (!expiry_of(args[1], &when)) {
        Py_RETURN_NONE;
    }
    PyObject *blob;
    int sealed = seal_into(module, args + 2, &blob);
    if (sealed < 0) {
        return NULL;
    }
    if (sealed == 0) {
        Py_RETURN_NONE;
    }
    PyObject *request =
        store_request(PyBytes_AS_STRING(verb), PyBytes_GET_SIZE(verb), args[4], when, blob);
    if (request == NULL) {
        Py_DECREF(blob);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, blob, request);
    Py_DECREF(blob);
    Py_DECREF(request);
    return pair;
}

/* An instance of the tuple subclass cls (a NamedTuple) holding items[0..n-1], or NULL. */
static PyObject *
named_tuple(PyTypeObject *cls, PyObject *const *items, Py_ssize_t n)
{
    PyObject *made = cls->tp_alloc(cls, n);
    if (made == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(made, i, items[i]);
    }
    return made;
}

/* seal_save() <-> _sealed.save_command's twin: (record, command), the Record of the
   fields and the Command (name "set" or "add") that stores it sealed, as new_record and
   store_command make them; None where seal_store() gives None. */
static PyObject *
seal_save(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError,
                        "seal_save(record_type, command_type, name, read, expiry, inner, outer, "
                        "key, version, writer, created, written, ttl, payload) takes 14 "
                        "arguments");
        return NULL;
    }
    PyObject *record_type = args[0], *command_type = args[1], *name = args[2];
    if (!PyType_Check(record_type) || !PyType_Check(command_type)
        || !PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type)
        || !PyType_IsSubtype((PyTypeObject *)command_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "seal_save: the record and command types must be tuples");
        return NULL;
    }
    if (!PyUnicode_CheckExact(name)
        || !(PyUnicode_CompareWithASCIIString(name, "set") == 0
             || PyUnicode_CompareWithASCIIString(name, "add") == 0)) {
        PyErr_SetString(PyExc_TypeError, "seal_save: name must be 'set' or 'add'");
        return NULL;
    }
    long when;
    if (!expiry_of(args[4], &when)) {
        Py_RETURN_NONE;
    }
    PyObject *blob;
    int sealed = seal_into(module, args + 5, &blob);
    if (sealed < 0) {
        return NULL;
    }
    if (sealed == 0) {
        Py_RETURN_NONE;
    }
    PyObject *request = store_request(PyUnicode_DATA(name), 3, args[7], when, blob);
    if (request == NULL) {
        Py_DECREF(blob);
        return NULL;
    }
    /* Command(name, key, request, read, value, ttl, token) */
    PyObject *fields[7] = {name, args[7], request, args[3], blob, args[4], Py_None};
    PyObject *command = named_tuple((PyTypeObject *)command_type, fields, 7);
    Py_DECREF(blob);
    Py_DECREF(request);
    if (command == NULL) {
        return NULL;
    }
    /* Record(version, writer, created, written, ttl, payload) */
    PyObject *record = named_tuple((PyTypeObject *)record_type, args + 8, 6);
    if (record == NULL) {
        Py_DECREF(command);
        return NULL;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(record);
        Py_DECREF(command);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, record);
    PyTuple_SET_ITEM(pair, 1, command);
    return pair;
}

/* ---- one gets reply from bytes already received (the asyncio transport) ------------ */

/* The reply to one `gets`, read from `data` (every byte a connection received since the
   request): the same grammar, bounds and answers as read_reply, without a socket. An int
   says the reply is incomplete: how many bytes, at least, to wait for before asking
   again (the value's whole block once its VALUE line is in, so a large value is parsed
   once, not once per chunk). */
static PyObject *
gets_reply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "gets_reply(data, max_value) takes 2 arguments");
        return NULL;
    }
    PyObject *failure_type = state_of(module)->failure_type;
    if (failure_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gets_reply: setup() was not called");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "gets_reply: data must be bytes");
        return NULL;
    }
    long long limit = PyLong_AsLongLong(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (limit < 0 || limit > (1LL << 40)) {
        PyErr_SetString(PyExc_ValueError, "gets_reply: max_value is out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    NodeRead node;
    node.failed = 0;
    const char *eol = len ? memmem(buf, (size_t)len, "\r\n", 2) : NULL;
    if (eol == NULL) {
        if (len > MAX_LINE + 1) { /* no line end within a line's length */
            fail(&node, "error", "reply line too long");
            goto failed;
        }
        return PyLong_FromSsize_t(len + 1);
    }
    Py_ssize_t line_len = eol - buf;
    if (line_len > MAX_LINE) {
        fail(&node, "error", "reply line too long");
        goto failed;
    }
    if (line_len == 3 && memcmp(buf, "END", 3) == 0) {
        if (len != 5) {
            fail(&node, "error", "unexpected bytes after the reply");
            goto failed;
        }
        Py_RETURN_NONE;
    }
    unsigned long long size, cas;
    if (parse_value_line(buf, line_len, &size, &cas) < 0) {
        unexpected(&node, buf, line_len);
        goto failed;
    }
    if (size > (unsigned long long)limit) {
        fail(&node, "error", "value too large");
        goto failed;
    }
    Py_ssize_t value_at = line_len + 2;
    Py_ssize_t total = value_at + (Py_ssize_t)size + 7; /* value, CRLF, "END\r\n" */
    if (len < total) {
        return PyLong_FromSsize_t(total);
    }
    if (len != total) {
        fail(&node, "error", "unexpected bytes after the reply");
        goto failed;
    }
    if (memcmp(buf + value_at + size, "\r\nEND\r\n", 7) != 0) {
        fail(&node, "error", "malformed value block");
        goto failed;
    }
    node.buf = (char *)buf;
    node.value_at = value_at;
    node.value_len = (Py_ssize_t)size;
    node.cas = cas;
failed:
    return result_of(failure_type, &node);
}

static PyObject *
setup(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"failure", NULL};
    PyObject *failure;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$O:setup", keywords, &failure)) {
        return NULL;
    }
    if (!PyCallable_Check(failure)) {
        PyErr_SetString(PyExc_TypeError, "setup: failure must be callable");
        return NULL;
    }
    Py_XSETREF(state_of(module)->failure_type, Py_NewRef(failure));
    Py_RETURN_NONE;
}

static PyObject *wide_round(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "setup(*, failure)\n--\n\nThe NodeFailure class that gets_round() reports failures with."},
    {"rank", (PyCFunction)(void (*)(void))rank, METH_FASTCALL,
     "rank(key_hash, seeds, nodes)\n--\n\n"
     "nodes ordered by their splitmix64 weight for key_hash, highest first."},
    {"plain_json", (PyCFunction)(void (*)(void))plain_json, METH_FASTCALL,
     "plain_json(data, max_depth)\n--\n\n"
     "True if data is a dict of exact JSON types (str keys, finite floats, ints of\n"
     "64 bits) nested at most max_depth levels; False if the Python walk must decide."},
    {"plain_payload", (PyCFunction)(void (*)(void))plain_payload, METH_FASTCALL,
     "plain_payload(payload, max_depth)\n--\n\n"
     "True if payload (bytes) surely is a JSON object that json.loads and the session\n"
     "data check accept, at most max_depth deep; False if Python must decide."},
    {"gets_round", (PyCFunction)(void (*)(void))gets_round, METH_FASTCALL,
     "gets_round(fds, request, agree=False, timeout=None, max_value=None)\n--\n\n"
     "Send request to every socket, then read one gets reply from each: per socket\n"
     "None (a miss), (value, cas), or a NodeFailure. With agree, the value alone\n"
     "(bytes) when every socket answered a hit with the same bytes. timeout: seconds\n"
     "left before the operation's deadline (None: none); max_value: the largest value\n"
     "accepted, in bytes (None: 1 MiB)."},
    {"slotted", (PyCFunction)(void (*)(void))slotted, METH_FASTCALL,
     "slotted(cls, slots, rows)\n--\n\n"
     "A tuple of one cls per row (a tuple of one value per slot), each made as\n"
     "object.__new__(cls) and slots[i].__set__(obj, row[i]) would make it."},
    {"timed_outcome", (PyCFunction)(void (*)(void))timed_outcome, METH_FASTCALL,
     "timed_outcome(result_cls, result_slots, outcome_cls, outcome_slots, head, rows, at,\n"
     "              times, version, elapsed)\n--\n\n"
     "The Outcome of a read whose rows are known beforehand, with this read's times\n"
     "(errpolicy_memcache._outcome.py_timed_outcome is the reference)."},
    {"outcome_text", (PyCFunction)(void (*)(void))outcome_text, METH_FASTCALL,
     "outcome_text(fields, operation, kind, served_by, nodes, key)\n--\n\n"
     "str() of the Outcome of those fields (nodes: its NodeResults, fields: their\n"
     "node, command and status member descriptors)."},
    {"gets_reply", (PyCFunction)(void (*)(void))gets_reply, METH_FASTCALL,
     "gets_reply(data, max_value)\n--\n\n"
     "The reply to one gets in data (bytes received so far): None (a miss),\n"
     "(value, cas), a NodeFailure, or an int: the reply is incomplete, wait for at\n"
     "least that many bytes in all."},
    {"line_round", (PyCFunction)(void (*)(void))line_round, METH_FASTCALL,
     "line_round(fds, request, timeout=None)\n--\n\n"
     "Send request to every socket, then read one reply line from each (a store\n"
     "command's STORED, NOT_STORED, an error line...): per socket the line's bytes\n"
     "without its CRLF, or a NodeFailure. timeout as for gets_round."},
    {"seal", (PyCFunction)(void (*)(void))seal, METH_FASTCALL,
     "seal(inner, outer, key, version, writer, created, written, ttl, payload)\n--\n\n"
     "The stored record's bytes, as _envelope.encode makes them, signed from the\n"
     "keyring's inner and outer HMAC-SHA256 states; None for a field encode() must judge."},
    {"seal_store", (PyCFunction)(void (*)(void))seal_store, METH_FASTCALL,
     "seal_store(verb, expiry, inner, outer, key, version, writer, created, written, ttl,\n"
     "payload)\n--\n\n"
     "(blob, request): the record as seal() gives it and the memcached store request\n"
     "writing it (verb: b'set' or b'add'); None where seal() gives None."},
    {"seal_save", (PyCFunction)(void (*)(void))seal_save, METH_FASTCALL,
     "seal_save(record_type, command_type, name, read, expiry, inner, outer, key, version,\n"
     "writer, created, written, ttl, payload)\n--\n\n"
     "(record, command): the Record of the fields and the Command (name 'set' or 'add',\n"
     "reply reader read) storing it sealed for expiry seconds; None where seal_store()\n"
     "gives None."},
    {"wide_round", (PyCFunction)(void (*)(void))wide_round, METH_FASTCALL,
     "wide_round(fds, request, need, timeout=None, max_value=None)\n--\n\n"
     "gets_round() without agree, answered short when the copies agree: (value, hits)\n"
     "when every socket answered, the first need of them a hit, and every hit the same\n"
     "bytes (hits: a bit per socket that held it, the first socket the lowest bit);\n"
     "else the list gets_round() gives."},
    {NULL},
};

static int
module_exec(PyObject *module)
{
    ModuleState *st = state_of(module);
    st->failure_type = NULL; /* set by setup(), from _native */
    st->str_copy = PyUnicode_InternFromString("copy");
    st->str_update = PyUnicode_InternFromString("update");
    st->str_digest = PyUnicode_InternFromString("digest");
    if (st->str_copy == NULL || st->str_update == NULL || st->str_digest == NULL) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    Py_VISIT(state_of(module)->failure_type);
    Py_VISIT(state_of(module)->str_copy);
    Py_VISIT(state_of(module)->str_update);
    Py_VISIT(state_of(module)->str_digest);
    return 0;
}

static int
module_clear(PyObject *module)
{
    Py_CLEAR(state_of(module)->failure_type);
    Py_CLEAR(state_of(module)->str_copy);
    Py_CLEAR(state_of(module)->str_update);
    Py_CLEAR(state_of(module)->str_digest);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_gil
    /* Declared, not assumed: the module keeps no global state, and a round touches only
       its own buffers, but free-threaded builds are not tested yet. Flip this to
       Py_MOD_GIL_NOT_USED once CI runs the speedups' tests on a free-threaded build. */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "errpolicy_memcache._speedups",
    .m_doc = "The session read's ranking and gets round in C; the Python code is the reference.",
    .m_size = sizeof(ModuleState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}

/* ---- the wide read's round (after a fault) ----------------------------------------- */

/* wide_round() <-> errpolicy_memcache._transport.wide_gets's _wide_agreed (which is
   _machine_read's agreement of a wide read): the round of gets_round(), then the
   agreement read off its list. A wide read asks every node whose breaker is closed:
   the first `need` (the session's home as far as it answers, and the substitutes a
   failover write reaches) must hold the copy, the others the same copy or none. */
static PyObject *
agreed_of(PyObject *list, Py_ssize_t need)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (n == 0 || n > 62) { /* the hits fit in one small int; a larger read decides in Python */
        return list;
    }
    PyObject *blob = NULL;
    unsigned long long hits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (item == Py_None) {
            if (i < need) {
                return list;
            }
            continue;
        }
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            return list; /* a NodeFailure */
        }
        PyObject *value = PyTuple_GET_ITEM(item, 0);
        if (!PyBytes_CheckExact(value)) {
            return list;
        }
        if (blob == NULL) {
            blob = value;
        }
        else if (PyBytes_GET_SIZE(value) != PyBytes_GET_SIZE(blob)
                 || memcmp(PyBytes_AS_STRING(value), PyBytes_AS_STRING(blob),
                           (size_t)PyBytes_GET_SIZE(blob)) != 0) {
            return list;
        }
        hits |= 1ULL << i;
    }
    if (blob == NULL) {
        return list;
    }
    PyObject *mask = PyLong_FromUnsignedLongLong(hits);
    if (mask == NULL) {
        Py_DECREF(list);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, blob, mask);
    Py_DECREF(mask);
    Py_DECREF(list);
    return pair;
}

static PyObject *
wide_round(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError,
                        "wide_round(fds, request, need, timeout=None, max_value=None) "
                        "takes 3 to 5 arguments");
        return NULL;
    }
    Py_ssize_t need = PyLong_AsSsize_t(args[2]);
    if (need == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Round round;
    if (round_of(&round, nargs >= 4 ? args[3] : NULL, nargs >= 5 ? args[4] : NULL) < 0) {
        return NULL;
    }
    PyObject *list = run_round(module, args[0], args[1], 0, 0, &round);
    if (list == NULL) {
        return NULL;
    }
    return agreed_of(list, need);
}
