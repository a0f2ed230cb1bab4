/* errpolicy._chooks: the interpreter hooks (warnings and logging) as C callables.
 *
 * Why C: a C callable adds no Python frame. A hook written in Python shows up in
 * every traceback that passes through it (a warning turned into an error by a
 * filter), in every stack walk made below it (a handler's findCaller-like lookup,
 * structlog's CallsiteParameterAdder, a custom showwarning), and shifts
 * warnings.warn's stacklevel by one. In C, outside guards, the hook forwards the
 * caller's own arguments to what was installed before it, and nothing can tell.
 *
 * The Python twin is errpolicy._hooks.PyHook (used when this module cannot be built
 * or ERRPOLICY_PURE_PYTHON is set); the test suite runs against both.
 *
 * Inside a guard of this thread, the hook calls `slow(frame, *args, **kwargs)`, a
 * Python function of errpolicy._capture, and does what it answers:
 *   None            the guard took it: return None;
 *   True            forward the caller's own arguments to `original`;
 *   (callable, args) call callable(*args) instead.
 * A TypeError out of `slow` means the caller's arguments did not bind to its
 * signature (inside, it catches everything but the guard's own violation): the
 * hook forwards them, and the original raises its own error for them.
 * Forwarding runs with capture switched off (the ContextVar set to None), and from
 * C, so what runs below (filters raising, handlers walking the stack) sees no
 * errpolicy frame either. A "direct" hook (Logger.isEnabledFor) returns `slow`'s
 * answer as it is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pythread.h>

typedef struct {
    PyTypeObject *hook_type;
    PyTypeObject *matcher_type;
} ModuleState;

/* -- who owns a frame ------------------------------------------------------------- */

/* A frame is (report, parent, owning thread's ident, guard); it counts only in the
 * thread that opened it. */
static int
owned_here(PyObject *frame)
{
    if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) < 3) {
        return 0;
    }
    PyObject *owner = PyTuple_GET_ITEM(frame, 2);
    if (!PyLong_Check(owner)) {
        return 0;
    }
    unsigned long ident = PyLong_AsUnsignedLong(owner);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return ident == PyThread_get_thread_ident();
}

/* The open frame of this thread (a new reference), or NULL without error. */
static PyObject *
frame_here(PyObject *active, int *failed)
{
    PyObject *frame;
    *failed = 0;
    if (PyContextVar_Get(active, NULL, &frame) < 0) {
        *failed = 1;
        return NULL;
    }
    if (frame == NULL) {
        return NULL;
    }
    if (frame == Py_None || !owned_here(frame)) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}

/* -- Hook ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *original; /* what was installed before: everything not taken goes there */
    PyObject *slow;     /* callable(frame, *args, **kwargs) inside a guard; None: pass-through */
    PyObject *active;   /* the ContextVar of open guards */
    char bind;          /* looked up on a class, binds like a function (a method hook) */
    char direct;        /* slow's answer is the result */
} Hook;

static PyObject *
call_with_capture_off(Hook *self, PyObject *decision, PyObject *const *args, size_t nargsf,
                      PyObject *kwnames)
{
    PyObject *token = PyContextVar_Set(self->active, Py_None);
    if (token == NULL) {
        return NULL;
    }
    PyObject *result;
    if (decision == Py_True) {
        result = PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    }
    else if (PyTuple_Check(decision) && PyTuple_GET_SIZE(decision) == 2
             && PyTuple_Check(PyTuple_GET_ITEM(decision, 1))) {
        result = PyObject_Call(PyTuple_GET_ITEM(decision, 0), PyTuple_GET_ITEM(decision, 1),
                               NULL);
    }
    else {
        PyErr_Format(PyExc_SystemError, "errpolicy hook: unexpected answer %R", decision);
        result = NULL;
    }
    /* Reset the variable whatever happened, keeping the exception that is on its way. */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    int reset = PyContextVar_Reset(self->active, token);
    Py_DECREF(token);
    if (reset < 0) {
        Py_XDECREF(exc);
        Py_XDECREF(result);
        return NULL;
    }
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int reset = PyContextVar_Reset(self->active, token);
    Py_DECREF(token);
    if (reset < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        Py_XDECREF(result);
        return NULL;
    }
    PyErr_Restore(type, value, tb);
#endif
    return result;
}

#define SMALL_STACK 8

static PyObject *
hook_inside(Hook *self, PyObject *frame, PyObject *const *args, size_t nargsf,
            PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *small[SMALL_STACK + 1];
    PyObject **stack = small;
    if (total + 1 > SMALL_STACK + 1) {
        stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = frame;
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *decision = PyObject_Vectorcall(self->slow, stack, (size_t)(nargs + 1), kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    if (decision == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        /* slow's arguments did not bind (slow catches everything else it raises):
         * forward, and the original raises its own error. */
        PyErr_Clear();
        decision = Py_NewRef(Py_True);
    }
    else if (decision == NULL || self->direct || decision == Py_None) {
        return decision;
    }
    PyObject *result = call_with_capture_off(self, decision, args, nargsf, kwnames);
    Py_DECREF(decision);
    return result;
}

static PyObject *
hook_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Hook *self = (Hook *)op;
    if (self->slow != NULL && self->slow != Py_None) {
        int failed;
        PyObject *frame = frame_here(self->active, &failed);
        if (failed) {
            return NULL;
        }
        if (frame != NULL) {
            PyObject *result = hook_inside(self, frame, args, nargsf, kwnames);
            Py_DECREF(frame);
            return result;
        }
    }
    return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
}

static PyObject *
hook_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"original", "slow", "active", "bind", "direct", NULL};
    PyObject *original, *slow, *active;
    int bind = 0, direct = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$pp:Hook", keywords, &original, &slow,
                                     &active, &bind, &direct)) {
        return NULL;
    }
    if (!PyCallable_Check(original) || (slow != Py_None && !PyCallable_Check(slow))) {
        PyErr_SetString(PyExc_TypeError, "Hook(original, slow, active): callables expected");
        return NULL;
    }
    if (!PyContextVar_CheckExact(active)) {
        PyErr_SetString(PyExc_TypeError, "Hook(): active must be a ContextVar");
        return NULL;
    }
    Hook *self = (Hook *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = hook_vectorcall;
    self->original = Py_NewRef(original);
    self->slow = Py_NewRef(slow);
    self->active = Py_NewRef(active);
    self->bind = (char)bind;
    self->direct = (char)direct;
    return (PyObject *)self;
}

static int
hook_traverse(Hook *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->original);
    Py_VISIT(self->slow);
    Py_VISIT(self->active);
    return 0;
}

static int
hook_clear(Hook *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->active);
    return 0;
}

static void
hook_dealloc(Hook *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* A method hook binds like the function it replaces; a function hook (warnings.warn)
 * stays unbound, as the builtin it replaces does. */
static PyObject *
hook_descr_get(PyObject *op, PyObject *obj, PyObject *type)
{
    Hook *self = (Hook *)op;
    if (!self->bind || obj == NULL || obj == Py_None) {
        return Py_NewRef(op);
    }
    return PyMethod_New(op, obj);
}

/* The names introspection reads (inspect, functools.wraps, pytest) come from the
 * original, so the hook looks like what it replaced. */
static PyObject *
hook_getattro(PyObject *op, PyObject *name)
{
    Hook *self = (Hook *)op;
    if (PyUnicode_Check(name)
        && (PyUnicode_CompareWithASCIIString(name, "__name__") == 0
            || PyUnicode_CompareWithASCIIString(name, "__qualname__") == 0
            || PyUnicode_CompareWithASCIIString(name, "__doc__") == 0
            || PyUnicode_CompareWithASCIIString(name, "__module__") == 0
            || PyUnicode_CompareWithASCIIString(name, "__text_signature__") == 0)) {
        return PyObject_GetAttr(self->original, name);
    }
    return PyObject_GenericGetAttr(op, name);
}

static PyObject *
hook_repr(Hook *self)
{
    return PyUnicode_FromFormat("<errpolicy hook of %R>", self->original);
}

static PyMemberDef hook_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Hook, original), READONLY,
     "What was installed before errpolicy's hook."},
    {"slow", T_OBJECT, offsetof(Hook, slow), 0,
     "Called inside a guard; None makes the hook a pure pass-through."},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Hook, vectorcall), READONLY, NULL},
    {NULL},
};

static PyType_Slot hook_slots[] = {
    {Py_tp_new, hook_new},
    {Py_tp_dealloc, hook_dealloc},
    {Py_tp_traverse, hook_traverse},
    {Py_tp_clear, hook_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, hook_descr_get},
    {Py_tp_getattro, hook_getattro},
    {Py_tp_repr, hook_repr},
    {Py_tp_members, hook_members},
    {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "errpolicy._chooks.Hook",
    .basicsize = sizeof(Hook),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = hook_slots,
};

/* -- GuardIsOpen: the message matcher of errpolicy's warnings filter ---------------- */

typedef struct {
    PyObject_HEAD
    PyObject *active;
} Matcher;

static PyObject *
matcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"active", NULL};
    PyObject *active;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:GuardIsOpen", keywords, &active)) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(active)) {
        PyErr_SetString(PyExc_TypeError, "GuardIsOpen(): active must be a ContextVar");
        return NULL;
    }
    Matcher *self = (Matcher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->active = Py_NewRef(active);
    return (PyObject *)self;
}

static int
matcher_traverse(Matcher *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->active);
    return 0;
}

static int
matcher_clear(Matcher *self)
{
    Py_CLEAR(self->active);
    return 0;
}

static void
matcher_dealloc(Matcher *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    matcher_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* Called by the warnings machinery for every warning that reaches the filters: it
 * must be cheap, and true only while a guard of this thread is open. */
static PyObject *
matcher_match(Matcher *self, PyObject *text)
{
    int failed;
    PyObject *frame = frame_here(self->active, &failed);
    if (failed) {
        return NULL;
    }
    if (frame == NULL) {
        Py_RETURN_FALSE;
    }
    Py_DECREF(frame);
    Py_RETURN_TRUE;
}

static PyObject *
matcher_repr(Matcher *self)
{
    return PyUnicode_FromString("errpolicy.guard_is_open");
}

static PyObject *
matcher_pattern(Matcher *self, void *closure)
{
    return PyUnicode_FromString("<errpolicy: a guard is open here>");
}

static PyMethodDef matcher_methods[] = {
    {"match", (PyCFunction)matcher_match, METH_O, "True only inside a guard of this thread."},
    {NULL},
};

static PyGetSetDef matcher_getset[] = {
    {"pattern", (getter)matcher_pattern, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot matcher_slots[] = {
    {Py_tp_new, matcher_new},
    {Py_tp_dealloc, matcher_dealloc},
    {Py_tp_traverse, matcher_traverse},
    {Py_tp_clear, matcher_clear},
    {Py_tp_repr, matcher_repr},
    {Py_tp_methods, matcher_methods},
    {Py_tp_getset, matcher_getset},
    {0, NULL},
};

static PyType_Spec matcher_spec = {
    .name = "errpolicy._chooks.GuardIsOpen",
    .basicsize = sizeof(Matcher),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = matcher_slots,
};

/* -- module (multi-phase init) ------------------------------------------------------ */

static int
chooks_exec(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);
    state->hook_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &hook_spec, NULL);
    if (state->hook_type == NULL || PyModule_AddType(module, state->hook_type) < 0) {
        return -1;
    }
    state->matcher_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &matcher_spec, NULL);
    if (state->matcher_type == NULL || PyModule_AddType(module, state->matcher_type) < 0) {
        return -1;
    }
    return 0;
}

static int
chooks_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModuleState *state = PyModule_GetState(module);
    Py_VISIT(state->hook_type);
    Py_VISIT(state->matcher_type);
    return 0;
}

static int
chooks_clear(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);
    Py_CLEAR(state->hook_type);
    Py_CLEAR(state->matcher_type);
    return 0;
}

static void
chooks_free(void *module)
{
    chooks_clear((PyObject *)module);
}

static PyModuleDef_Slot chooks_slots[] = {
    {Py_mod_exec, chooks_exec},
#ifdef Py_mod_gil
    /* Declared explicitly: the hooks keep no state of their own beyond their fields,
     * set once at install, but no free-threaded build has run the tests yet. Flip to
     * Py_MOD_GIL_NOT_USED once one has (see docs/design.md, free-threading). */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef chooks_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "errpolicy._chooks",
    .m_doc = "errpolicy's warnings and logging hooks, in C so that they add no frame.",
    .m_size = sizeof(ModuleState),
    .m_slots = chooks_slots,
    .m_traverse = chooks_traverse,
    .m_clear = chooks_clear,
    .m_free = chooks_free,
};

PyMODINIT_FUNC
PyInit__chooks(void)
{
    return PyModuleDef_Init(&chooks_module);
}
