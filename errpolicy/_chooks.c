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

/* The frame the garbage collector hides while it runs finalizers (errpolicy._state.
 * hidden, a list of one item), borrowed; NULL when there is none. */
static inline PyObject *
hidden_frame(PyObject *hidden)
{
    if (hidden == NULL || !PyList_CheckExact(hidden) || PyList_GET_SIZE(hidden) != 1) {
        return NULL;
    }
    return PyList_GET_ITEM(hidden, 0);
}

/* A frame is (report, parent, owning thread's ident, guard); it counts only in the
 * thread that opened it, and not while the collector hides it. */
static int
owned_here(PyObject *frame, PyObject *hidden)
{
    if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) < 3 || frame == hidden_frame(hidden)) {
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
frame_here(PyObject *active, PyObject *hidden, int *failed)
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
    if (frame == Py_None || !owned_here(frame, hidden)) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}

/* A builtin's C function taking (self, args, nargs, kwnames): METH_FASTCALL | METH_KEYWORDS. */
typedef PyObject *(*hook_fast)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);

/* -- Hook ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *original; /* what was installed before: everything not taken goes there */
    PyObject *slow;     /* callable(frame, *args, **kwargs) inside a guard; None: pass-through */
    PyObject *active;   /* the ContextVar of open guards */
    PyObject *hidden;   /* errpolicy._state.hidden, or NULL */
    /* When original is a builtin taking (args, nargs, kwnames) (warnings.warn and
     * warn_explicit are), its C function and self: outside guards the hook calls it
     * directly, which saves the generic call path's dispatch and checks (the
     * builtin's own recursion check among them: the hook adds no Python depth). */
    hook_fast fast;
    PyObject *fast_self; /* borrowed: original holds it */
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
        /* frame_here, inlined: outside guards the variable holds None, and this
         * test is all the hook adds to the call it forwards. */
        PyObject *frame;
        if (PyContextVar_Get(self->active, NULL, &frame) < 0) {
            return NULL;
        }
        if (frame != NULL && frame != Py_None && owned_here(frame, self->hidden)) {
            PyObject *result = hook_inside(self, frame, args, nargsf, kwnames);
            Py_DECREF(frame);
            return result;
        }
        Py_XDECREF(frame);
    }
    if (self->fast != NULL) {
        return self->fast(self->fast_self, args, PyVectorcall_NARGS(nargsf), kwnames);
    }
    return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
}

static PyObject *
hook_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"original", "slow", "active", "bind", "direct", "hidden", NULL};
    PyObject *original, *slow, *active, *hidden = NULL;
    int bind = 0, direct = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$ppO!:Hook", keywords, &original, &slow,
                                     &active, &bind, &direct, &PyList_Type, &hidden)) {
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
    self->fast = NULL;
    self->fast_self = NULL;
    if (PyCFunction_CheckExact(original)
        && (PyCFunction_GET_FLAGS(original) & ~METH_COEXIST) == (METH_FASTCALL | METH_KEYWORDS)) {
        self->fast = (hook_fast)(void (*)(void))PyCFunction_GET_FUNCTION(original);
        self->fast_self = PyCFunction_GET_SELF(original);
    }
    self->slow = Py_NewRef(slow);
    self->active = Py_NewRef(active);
    self->hidden = Py_XNewRef(hidden);
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
    Py_VISIT(self->hidden);
    return 0;
}

static int
hook_clear(Hook *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->active);
    Py_CLEAR(self->hidden);
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

/* -- a hook in place of a builtin -------------------------------------------------
 *
 * warnings.warn and warn_explicit are builtins, and CPython calls an exact builtin
 * by its fastest path (3.11+ specialises the call site to the C function). A Hook
 * object takes the generic call path instead, which costs a few percent of a
 * warning dropped by an ignore filter. So in place of a builtin, errpolicy puts a
 * builtin: a PyCFunction whose self is a small module object (a "layer") holding
 * the Hook. With a module as self the builtin looks like the one it replaces:
 * type, __name__, __qualname__, __module__, __doc__, __text_signature__ and so
 * inspect.signature; only __self__ differs, and like the builtin it replaces it has
 * no __wrapped__ (errpolicy._hooks.below() answers what it wraps). */

typedef struct {
    PyObject *hook;   /* the Hook doing the work */
    PyMethodDef def;  /* the builtin's definition: the name and doc of the original */
    char *name;       /* owned copies of what def points at */
    char *doc;
} LayerState;

static int
layer_traverse(PyObject *module, visitproc visit, void *arg)
{
    LayerState *state = PyModule_GetState(module);
    if (state != NULL) {
        Py_VISIT(state->hook);
    }
    return 0;
}

static int
layer_clear(PyObject *module)
{
    LayerState *state = PyModule_GetState(module);
    if (state != NULL) {
        Py_CLEAR(state->hook);
    }
    return 0;
}

static void
layer_free(void *module)
{
    LayerState *state = PyModule_GetState((PyObject *)module);
    if (state != NULL) {
        Py_CLEAR(state->hook);
        PyMem_Free(state->name);
        PyMem_Free(state->doc);
        state->name = state->doc = NULL;
    }
}

static struct PyModuleDef layer_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "errpolicy._chooks.layer",
    .m_doc = "errpolicy's hook standing in for a builtin (the self of the builtin in place).",
    .m_size = sizeof(LayerState),
    .m_traverse = layer_traverse,
    .m_clear = layer_clear,
    .m_free = layer_free,
};

static PyObject *
layer_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    LayerState *state = PyModule_GetState(module);
    if (state == NULL || state->hook == NULL) {
        PyErr_SetString(PyExc_SystemError, "errpolicy hook: its layer was cleared");
        return NULL;
    }
    return hook_vectorcall(state->hook, args, (size_t)nargs, kwnames);
}

static char *
copy_utf8(PyObject *text)
{
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL) {
        return NULL;
    }
    char *copy = PyMem_Malloc((size_t)size + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, utf8, (size_t)size + 1);
    return copy;
}

/* The builtin's doc: "name(signature)\n--\n\ndoc" when the original has a text
 * signature (how CPython stores both in one string), else the doc alone. */
static PyObject *
builtin_doc(PyObject *original, PyObject *name)
{
    PyObject *doc = PyObject_GetAttrString(original, "__doc__");
    if (doc == NULL) {
        return NULL;
    }
    if (doc == Py_None) {
        Py_SETREF(doc, PyUnicode_FromString(""));
    }
    PyObject *signature = PyObject_GetAttrString(original, "__text_signature__");
    if (signature == NULL) {
        PyErr_Clear();
        signature = Py_NewRef(Py_None);
    }
    PyObject *result = doc;
    if (doc != NULL && PyUnicode_Check(signature)) {
        result = PyUnicode_FromFormat("%U%U\n--\n\n%U", name, signature, doc);
        Py_DECREF(doc);
    }
    Py_DECREF(signature);
    return result;
}

/* builtin(hook): the builtin to put in place of hook's original, a builtin itself. */
static PyObject *
chooks_builtin(PyObject *module, PyObject *hook)
{
    ModuleState *mstate = PyModule_GetState(module);
    if (!PyObject_TypeCheck(hook, mstate->hook_type)) {
        PyErr_SetString(PyExc_TypeError, "builtin(hook): a Hook expected");
        return NULL;
    }
    PyObject *original = ((Hook *)hook)->original;
    if (!PyCFunction_CheckExact(original) || ((Hook *)hook)->bind) {
        PyErr_SetString(PyExc_TypeError, "builtin(hook): the hook must wrap a builtin function");
        return NULL;
    }
    PyObject *layer = PyModule_Create(&layer_def);
    if (layer == NULL) {
        return NULL;
    }
    LayerState *state = PyModule_GetState(layer);
    PyObject *result = NULL;
    PyObject *name = PyObject_GetAttrString(original, "__name__");
    PyObject *qualified = NULL, *doc = NULL;
    if (name == NULL || !PyUnicode_Check(name)) {
        if (name != NULL) {
            PyErr_SetString(PyExc_TypeError, "builtin(hook): the original's name is not a str");
        }
        goto done;
    }
    doc = builtin_doc(original, name);
    qualified = PyObject_GetAttrString(original, "__module__");
    if (doc == NULL || qualified == NULL) {
        goto done;
    }
    state->name = copy_utf8(name);
    state->doc = copy_utf8(doc);
    if (state->name == NULL || state->doc == NULL) {
        goto done;
    }
    state->hook = Py_NewRef(hook);
    state->def.ml_name = state->name;
    state->def.ml_meth = (PyCFunction)(void (*)(void))layer_call;
    state->def.ml_flags = METH_FASTCALL | METH_KEYWORDS;
    state->def.ml_doc = state->doc;
    /* The builtin holds the layer (its self), which holds def: CPython reads def
     * before it lets go of self (see meth_dealloc). */
    result = PyCFunction_NewEx(&state->def, layer, qualified);
done:
    Py_XDECREF(name);
    Py_XDECREF(doc);
    Py_XDECREF(qualified);
    Py_DECREF(layer);
    return result;
}

static PyMethodDef chooks_methods[] = {
    {"builtin", chooks_builtin, METH_O,
     "builtin(hook)\n--\n\nA builtin that calls hook, to put in place of hook's original "
     "(a builtin): it takes CPython's fastest call path and looks like the original."},
    {NULL},
};

/* -- GuardIsOpen: the message matcher of errpolicy's warnings filter ---------------- */

typedef struct {
    PyObject_HEAD
    PyObject *active;
    PyObject *hidden; /* errpolicy._state.hidden, or NULL */
} Matcher;

static PyObject *
matcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"active", "hidden", NULL};
    PyObject *active, *hidden = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O!:GuardIsOpen", keywords, &active,
                                     &PyList_Type, &hidden)) {
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
    self->hidden = Py_XNewRef(hidden);
    return (PyObject *)self;
}

static int
matcher_traverse(Matcher *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->active);
    Py_VISIT(self->hidden);
    return 0;
}

static int
matcher_clear(Matcher *self)
{
    Py_CLEAR(self->active);
    Py_CLEAR(self->hidden);
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
    PyObject *frame = frame_here(self->active, self->hidden, &failed);
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
    .m_methods = chooks_methods,
    .m_traverse = chooks_traverse,
    .m_clear = chooks_clear,
    .m_free = chooks_free,
};

PyMODINIT_FUNC
PyInit__chooks(void)
{
    return PyModuleDef_Init(&chooks_module);
}
