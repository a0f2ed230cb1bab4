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
 * tests/memcache/test_speedups.py holds the two to the same answers.
 *
 * gets_round() works on blocking sockets whose timeouts the kernel enforces
 * (SO_RCVTIMEO / SO_SNDTIMEO, see _wire._set_read_timeout): a timeout is EAGAIN.
 * The GIL is released around each system call, as the socket module does.
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define MAX_LINE 1024          /* a VALUE line is about 100 bytes; more is not memcached */
#define MAX_VALUE (1L << 30)    /* memcached's item size limit is far below */
#define FIRST_CHUNK 65536
#define MAX_NODES 64
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* no SIGPIPE flag here: Python ignores SIGPIPE anyway */
#endif

static PyObject *failure_type = NULL; /* _wire.NodeFailure, from setup() */

/* ---- ranking ---------------------------------------------------------------------- */

static inline unsigned long long
mix(unsigned long long x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
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
    if (n != PySequence_Fast_GET_SIZE(nodes) || n > MAX_NODES) {
        PyErr_SetString(PyExc_ValueError, "rank: one seed per node, at most 64 nodes");
        goto done;
    }
    unsigned long long weight[MAX_NODES];
    Py_ssize_t order[MAX_NODES];
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long seed =
            PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seeds, i));
        if (seed == (unsigned long long)-1 && PyErr_Occurred()) {
            goto done;
        }
        weight[i] = mix(h ^ seed);
        /* Insertion sort: highest weight first, the given order among equal weights. */
        Py_ssize_t j = i;
        while (j > 0 && weight[order[j - 1]] < weight[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PySequence_Fast_GET_ITEM(nodes, order[i]);
        PyList_SET_ITEM(result, i, Py_NewRef(node));
    }
done:
    Py_DECREF(seeds);
    Py_DECREF(nodes);
    return result;
}

/* ---- one round of gets ------------------------------------------------------------ */

typedef struct {
    int fd;
    int failed;               /* 1 once kind/detail are set */
    const char *kind;         /* refused, timeout, closed or error */
    char detail[96];
    char *buf;
    Py_ssize_t len, cap;
    Py_ssize_t value_at, value_len; /* value_len < 0: a miss */
    unsigned long long cas;
} NodeRead;

static void
fail(NodeRead *node, const char *kind, const char *detail)
{
    node->failed = 1;
    node->kind = kind;
    snprintf(node->detail, sizeof(node->detail), "%s", detail);
}

static void
fail_errno(NodeRead *node, int err)
{
    const char *kind;
    switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case ETIMEDOUT:
        fail(node, "timeout", "timed out");
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
   once the signal handlers ran. >0: bytes moved; 0: the peer closed (recv);
   -1: a node failure was recorded; -2: a handler raised (exception set). */
static ssize_t
transfer(NodeRead *node, int sending, char *buf, size_t size)
{
    for (;;) {
        ssize_t moved;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        moved = sending ? send(node->fd, buf, size, MSG_NOSIGNAL) : recv(node->fd, buf, size, 0);
        if (moved < 0) {
            err = errno;
        }
        Py_END_ALLOW_THREADS
        if (moved >= 0) {
            return moved;
        }
        if (err != EINTR) {
            fail_errno(node, err);
            return -1;
        }
        if (interrupted() < 0) {
            return -2;
        }
    }
}

/* Send all of request; 0 on success or node failure, -1 with an exception set. */
static int
send_all(NodeRead *node, const char *data, Py_ssize_t size)
{
    while (size > 0) {
        ssize_t sent = transfer(node, 1, (char *)data, (size_t)size);
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
fill(NodeRead *node, Py_ssize_t want)
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
    ssize_t got = transfer(node, 0, node->buf + node->len, (size_t)(node->cap - node->len));
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

static int
parse_number(const char *s, Py_ssize_t n, unsigned long long *out)
{
    if (n <= 0 || n > 20) {
        return -1;
    }
    unsigned long long value = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        unsigned long long next = value * 10 + (unsigned long long)(s[i] - '0');
        if (next / 10 != value) {
            return -1; /* overflow */
        }
        value = next;
    }
    *out = value;
    return 0;
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
    Py_ssize_t k = n < 40 ? n : 40;
    for (Py_ssize_t i = 0; i < k; i++) {
        shown[i] = (line[i] >= 32 && line[i] < 127) ? line[i] : '?';
    }
    shown[k] = '\0';
    if (starts_with(line, n, "CLIENT_ERROR") || starts_with(line, n, "SERVER_ERROR")
        || (n == 5 && memcmp(line, "ERROR", 5) == 0)) {
        fail(node, "error", shown);
        return;
    }
    char detail[80];
    snprintf(detail, sizeof(detail), "unexpected reply '%s'", shown);
    fail(node, "error", detail);
}

/* Read and check one reply to `gets`: 0 (result or failure recorded) or -1. */
static int
read_reply(NodeRead *node)
{
    const char *eol;
    for (;;) {
        eol = node->len ? memmem(node->buf, (size_t)node->len, "\r\n", 2) : NULL;
        if (eol != NULL) {
            break;
        }
        if (node->len > MAX_LINE) {
            fail(node, "error", "reply line too long");
            return 0;
        }
        int r = fill(node, 0);
        if (r <= 0) {
            return r;
        }
    }
    Py_ssize_t line_len = eol - node->buf;
    const char *line = node->buf;
    if (line_len == 3 && memcmp(line, "END", 3) == 0) {
        if (node->len != 5) {
            fail(node, "error", "unexpected bytes after the reply");
            return 0;
        }
        node->value_len = -1;
        return 0;
    }
    /* VALUE <key> <flags> <bytes> <cas> */
    const char *token[5];
    Py_ssize_t token_len[5];
    int count = 0;
    Py_ssize_t i = 0;
    while (i < line_len && count <= 5) {
        Py_ssize_t start = i;
        while (i < line_len && line[i] != ' ') {
            i++;
        }
        if (count < 5) {
            token[count] = line + start;
            token_len[count] = i - start;
        }
        count++;
        if (i < line_len) {
            i++; /* the space */
        }
    }
    unsigned long long size, cas, flags;
    if (count != 5 || token_len[0] != 5 || memcmp(token[0], "VALUE", 5) != 0
        || parse_number(token[2], token_len[2], &flags) < 0
        || parse_number(token[3], token_len[3], &size) < 0
        || parse_number(token[4], token_len[4], &cas) < 0) {
        unexpected(node, line, line_len);
        return 0;
    }
    if (size > (unsigned long long)MAX_VALUE) {
        fail(node, "error", "value too large");
        return 0;
    }
    Py_ssize_t value_at = line_len + 2;
    Py_ssize_t total = value_at + (Py_ssize_t)size + 7; /* value, CRLF, "END\r\n" */
    while (node->len < total) {
        int r = fill(node, total);
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

static PyObject *
result_of(NodeRead *node)
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

static PyObject *
gets_round(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "gets_round(fds, request, agree=False) takes 2 or 3 arguments");
        return NULL;
    }
    int agree = 0;
    if (nargs == 3 && (agree = PyObject_IsTrue(args[2])) < 0) {
        return NULL;
    }
    if (failure_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "gets_round: setup() was not called");
        return NULL;
    }
    PyObject *fds = PySequence_Fast(args[0], "fds must be a sequence of ints");
    if (fds == NULL) {
        return NULL;
    }
    Py_buffer request;
    if (PyObject_GetBuffer(args[1], &request, PyBUF_SIMPLE) < 0) {
        Py_DECREF(fds);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fds);
    PyObject *result = NULL;
    NodeRead nodes[MAX_NODES];
    memset(nodes, 0, sizeof(nodes));
    if (n > MAX_NODES) {
        PyErr_SetString(PyExc_ValueError, "gets_round: at most 64 nodes");
        goto done;
    }
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
        if (send_all(&nodes[i], request.buf, request.len) < 0) {
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!nodes[i].failed && read_reply(&nodes[i]) < 0) {
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
        PyObject *item = result_of(&nodes[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    for (Py_ssize_t i = 0; i < n && i < MAX_NODES; i++) {
        PyMem_Free(nodes[i].buf);
    }
    PyBuffer_Release(&request);
    Py_DECREF(fds);
    return result;
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
    Py_XSETREF(failure_type, Py_NewRef(failure));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "setup(*, failure)\n--\n\nThe NodeFailure class that gets_round() reports failures with."},
    {"rank", (PyCFunction)(void (*)(void))rank, METH_FASTCALL,
     "rank(key_hash, seeds, nodes)\n--\n\n"
     "nodes ordered by their splitmix64 weight for key_hash, highest first."},
    {"gets_round", (PyCFunction)(void (*)(void))gets_round, METH_FASTCALL,
     "gets_round(fds, request, agree=False)\n--\n\n"
     "Send request to every socket, then read one gets reply from each: per socket\n"
     "None (a miss), (value, cas), or a NodeFailure. With agree, the value alone\n"
     "(bytes) when every socket answered a hit with the same bytes."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "errpolicy_memcache._speedups",
    .m_doc = "The session read's ranking and gets round in C; the Python code is the reference.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
