/* errpolicy._speedups: the guard's enter and exit in C.
 *
 * The same logic as errpolicy/_core.py (the reference implementation, used when this
 * module cannot be built or ERRPOLICY_PURE_PYTHON is set); the test suite runs against
 * both. Only the per-entry hot path lives here: everything that happens when a guard
 * captured something, or when the configuration changed, is called back in Python
 * through the callables handed to setup().
 *
 * Why C at all: a guard entry must cost a fraction of warnings.catch_warnings().
 * In Python, the calls of __enter__ and __exit__ and making the report alone cost
 * about as much as that target allows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pythread.h>

/* What setup() hands over, kept for the life of the process. */
static PyObject *active;          /* the ContextVar holding the innermost frame */
static PyObject *warnings_dict;   /* warnings.__dict__, to read "filters" */
static PyObject *front_filter;    /* the entry errpolicy keeps first in warnings.filters */
static PyObject *ensure_ready;    /* callable(): install hooks, put the filter first */
static PyObject *config_dict;     /* errpolicy._config.__dict__, to read "_config" */
static PyObject *resolve;         /* callable(guard, config) -> policy (and caches it) */
static PyObject *finish;          /* callable(report, exc): sink, raise or annotate */
static PyTypeObject *report_type; /* errpolicy.Report, a subclass of ReportCore */
static PyObject *shared_guards;   /* dict: name -> the shared Guard of that name */
static PyObject *make_guard;      /* the Python errpolicy.guard, for every other call */
static PyObject *str_filters;
static PyObject *str_config;

/* -- ReportCore: the fields of a Report that the hot path touches ------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *name;
    PyObject *policy;
    PyObject *config;
    PyObject *token;
    PyObject *head;
    char open;
} ReportCore;

/* No Py_VISIT of the type: these types are static, and for a heap subclass
 * (errpolicy.Report, errpolicy.Guard) CPython's subtype_traverse visits it. */
static int
report_traverse(ReportCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->name);
    Py_VISIT(self->policy);
    Py_VISIT(self->config);
    Py_VISIT(self->token);
    Py_VISIT(self->head);
    return 0;
}

static int
report_clear(ReportCore *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->policy);
    Py_CLEAR(self->config);
    Py_CLEAR(self->token);
    Py_CLEAR(self->head);
    return 0;
}

static void
report_dealloc(ReportCore *self)
{
    PyObject_GC_UnTrack(self);
    report_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef report_members[] = {
    {"name", T_OBJECT, offsetof(ReportCore, name), 0, "The guard's name."},
    {"policy", T_OBJECT, offsetof(ReportCore, policy), 0, "The policy that decides."},
    {"_config", T_OBJECT, offsetof(ReportCore, config), 0, NULL},
    {"_token", T_OBJECT, offsetof(ReportCore, token), 0, NULL},
    {"_head", T_OBJECT, offsetof(ReportCore, head), 0, NULL},
    {"_open", T_BOOL, offsetof(ReportCore, open), 0, NULL},
    {NULL},
};

static PyTypeObject ReportCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "errpolicy._speedups.ReportCore",
    .tp_basicsize = sizeof(ReportCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fields of a Report read and written on every guard entry.",
    .tp_traverse = (traverseproc)report_traverse,
    .tp_clear = (inquiry)report_clear,
    .tp_dealloc = (destructor)report_dealloc,
    .tp_members = report_members,
    .tp_new = PyType_GenericNew,
};

/* -- GuardCore: a guard's name, policies and cached resolution; enter and exit ----- */

typedef struct {
    PyObject_HEAD
    PyObject *name;
    PyObject *policy;
    PyObject *default_;
    PyObject *resolved_config;
    PyObject *resolved_policy;
} GuardCore;

static int
guard_traverse(GuardCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->name);
    Py_VISIT(self->policy);
    Py_VISIT(self->default_);
    Py_VISIT(self->resolved_config);
    Py_VISIT(self->resolved_policy);
    return 0;
}

static int
guard_clear(GuardCore *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->policy);
    Py_CLEAR(self->default_);
    Py_CLEAR(self->resolved_config);
    Py_CLEAR(self->resolved_policy);
    return 0;
}

static void
guard_dealloc(GuardCore *self)
{
    PyObject_GC_UnTrack(self);
    guard_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
not_set_up(void)
{
    if (active == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "errpolicy._speedups.setup() was not called");
        return 1;
    }
    return 0;
}

/* True if errpolicy's filter is first in warnings.filters (then the hooks are in). */
static int
hooks_ready(void)
{
    PyObject *filters = PyDict_GetItemWithError(warnings_dict, str_filters); /* borrowed */
    if (filters == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return PyList_Check(filters) && PyList_GET_SIZE(filters) > 0
           && PyList_GET_ITEM(filters, 0) == front_filter;
}

/* The policy for this entry: cached per configuration object, else resolve() in Python. */
static PyObject *
entry_policy(GuardCore *self, PyObject *config)
{
    if (self->resolved_config == config && self->resolved_policy != NULL) {
        return Py_NewRef(self->resolved_policy);
    }
    return PyObject_CallFunctionObjArgs(resolve, (PyObject *)self, config, NULL);
}

static PyObject *
guard_enter(GuardCore *self, PyObject *Py_UNUSED(ignored))
{
    if (not_set_up()) {
        return NULL;
    }
    int ready = hooks_ready();
    if (ready < 0) {
        return NULL;
    }
    if (!ready) {
        PyObject *done = PyObject_CallNoArgs(ensure_ready);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    PyObject *config = PyDict_GetItemWithError(config_dict, str_config); /* borrowed */
    if (config == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "errpolicy._config has no _config");
        }
        return NULL;
    }
    Py_INCREF(config);
    PyObject *policy = entry_policy(self, config);
    if (policy == NULL) {
        Py_DECREF(config);
        return NULL;
    }
    ReportCore *report = (ReportCore *)report_type->tp_alloc(report_type, 0);
    if (report == NULL) {
        Py_DECREF(config);
        Py_DECREF(policy);
        return NULL;
    }
    report->name = Py_XNewRef(self->name);
    report->policy = policy; /* the references move into the report */
    report->config = config;
    report->open = 1;

    /* The enclosing frame counts only if it was opened in this thread (a context
     * copied into another thread by asyncio.to_thread does not carry the guard). */
    unsigned long ident = PyThread_get_thread_ident();
    PyObject *parent = NULL;
    if (PyContextVar_Get(active, Py_None, &parent) < 0) {
        Py_DECREF(report);
        return NULL;
    }
    if (parent != Py_None) {
        int same_thread = 0;
        if (PyTuple_Check(parent) && PyTuple_GET_SIZE(parent) == 4) {
            unsigned long owner = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(parent, 2));
            if (owner == (unsigned long)-1 && PyErr_Occurred()) {
                Py_DECREF(parent);
                Py_DECREF(report);
                return NULL;
            }
            same_thread = owner == ident;
        }
        if (!same_thread) {
            Py_SETREF(parent, Py_NewRef(Py_None));
        }
    }
    PyObject *py_ident = PyLong_FromUnsignedLong(ident);
    if (py_ident == NULL) {
        Py_DECREF(parent);
        Py_DECREF(report);
        return NULL;
    }
    PyObject *frame = PyTuple_Pack(4, (PyObject *)report, parent, py_ident, (PyObject *)self);
    Py_DECREF(parent);
    Py_DECREF(py_ident);
    if (frame == NULL) {
        Py_DECREF(report);
        return NULL;
    }
    PyObject *token = PyContextVar_Set(active, frame);
    Py_DECREF(frame);
    if (token == NULL) {
        Py_DECREF(report);
        return NULL;
    }
    report->token = token;
    return (PyObject *)report;
}

static PyObject *
not_innermost(GuardCore *self)
{
    PyErr_Format(PyExc_RuntimeError,
                 "%R exited, but it is not the innermost open guard here", (PyObject *)self);
    return NULL;
}

static PyObject *
guard_exit(GuardCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__ takes 3 arguments, not %zd", nargs);
        return NULL;
    }
    if (not_set_up()) {
        return NULL;
    }
    PyObject *frame = NULL;
    if (PyContextVar_Get(active, Py_None, &frame) < 0) {
        return NULL;
    }
    if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 4
        || PyTuple_GET_ITEM(frame, 3) != (PyObject *)self
        || !PyObject_TypeCheck(PyTuple_GET_ITEM(frame, 0), &ReportCore_Type)
        || ((ReportCore *)PyTuple_GET_ITEM(frame, 0))->token == NULL
        || ((ReportCore *)PyTuple_GET_ITEM(frame, 0))->token == Py_None) {
        Py_DECREF(frame);
        return not_innermost(self);
    }
    ReportCore *report = (ReportCore *)Py_NewRef(PyTuple_GET_ITEM(frame, 0));
    Py_DECREF(frame);
    PyObject *token = report->token;
    report->token = NULL;
    int reset = PyContextVar_Reset(active, token);
    Py_DECREF(token);
    report->open = 0;
    if (reset < 0) {
        Py_DECREF(report);
        return NULL;
    }
    if (report->head != NULL && report->head != Py_None) { /* captured anything? */
        PyObject *done = PyObject_CallFunctionObjArgs(finish, (PyObject *)report, args[1], NULL);
        Py_DECREF(report);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
        Py_RETURN_NONE;
    }
    Py_DECREF(report);
    Py_RETURN_NONE;
}

static PyMethodDef guard_methods[] = {
    {"__enter__", (PyCFunction)guard_enter, METH_NOARGS,
     "Open the guard: a fresh Report, made the innermost frame here."},
    {"__exit__", (PyCFunction)(void (*)(void))guard_exit, METH_FASTCALL,
     "Close the guard; if it captured anything, deliver, raise or annotate."},
    {NULL},
};

static PyMemberDef guard_members[] = {
    {"name", T_OBJECT, offsetof(GuardCore, name), 0, "The guard's name."},
    {"_policy", T_OBJECT, offsetof(GuardCore, policy), 0, NULL},
    {"_default", T_OBJECT, offsetof(GuardCore, default_), 0, NULL},
    {"_resolved_config", T_OBJECT, offsetof(GuardCore, resolved_config), 0, NULL},
    {"_resolved_policy", T_OBJECT, offsetof(GuardCore, resolved_policy), 0, NULL},
    {NULL},
};

static PyTypeObject GuardCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "errpolicy._speedups.GuardCore",
    .tp_basicsize = sizeof(GuardCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A guard's enter and exit.",
    .tp_traverse = (traverseproc)guard_traverse,
    .tp_clear = (inquiry)guard_clear,
    .tp_dealloc = (destructor)guard_dealloc,
    .tp_methods = guard_methods,
    .tp_members = guard_members,
    .tp_new = PyType_GenericNew,
};

/* -- guard(name): the shared Guard of a name, looked up without a Python call ------ */

static PyObject *
guard_lookup(PyObject *Py_UNUSED(module), PyObject *const *args, size_t nargsf,
             PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (not_set_up()) {
        return NULL;
    }
    if (nargs == 1 && kwnames == NULL && PyUnicode_CheckExact(args[0])) {
        PyObject *found = PyDict_GetItemWithError(shared_guards, args[0]); /* borrowed */
        if (found != NULL) {
            return Py_NewRef(found);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_Vectorcall(make_guard, args, nargsf, kwnames);
}

/* -- setup -------------------------------------------------------------------------- */

static PyObject *
module_dict_of(PyObject *module, const char *what)
{
    PyObject *dict = PyModule_Check(module) ? PyModule_GetDict(module) : NULL; /* borrowed */
    if (dict == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "setup(): %s must be a module", what);
        return NULL;
    }
    return Py_NewRef(dict);
}

static PyObject *
setup(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"active",        "warnings_module", "front_filter",
                               "ensure_ready",  "config_module",   "report_type",
                               "resolve",       "finish",          "shared_guards",
                               "make_guard",    NULL};
    PyObject *a_active, *a_warnings, *a_filter, *a_ready, *a_config, *a_report, *a_resolve,
        *a_finish, *a_shared, *a_make;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOOOOO!O:setup", keywords, &a_active,
                                     &a_warnings, &a_filter, &a_ready, &a_config, &a_report,
                                     &a_resolve, &a_finish, &PyDict_Type, &a_shared,
                                     &a_make)) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(a_active)) {
        PyErr_SetString(PyExc_TypeError, "setup(): active must be a ContextVar");
        return NULL;
    }
    if (!PyType_Check(a_report)
        || !PyType_IsSubtype((PyTypeObject *)a_report, &ReportCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup(): report_type must subclass ReportCore");
        return NULL;
    }
    if (!PyCallable_Check(a_ready) || !PyCallable_Check(a_resolve)
        || !PyCallable_Check(a_finish) || !PyCallable_Check(a_make)) {
        PyErr_SetString(PyExc_TypeError,
                        "setup(): ensure_ready, resolve, finish, make_guard are callables");
        return NULL;
    }
    PyObject *w_dict = module_dict_of(a_warnings, "warnings_module");
    if (w_dict == NULL) {
        return NULL;
    }
    PyObject *c_dict = module_dict_of(a_config, "config_module");
    if (c_dict == NULL) {
        Py_DECREF(w_dict);
        return NULL;
    }
    Py_XSETREF(warnings_dict, w_dict);
    Py_XSETREF(config_dict, c_dict);
    Py_XSETREF(active, Py_NewRef(a_active));
    Py_XSETREF(front_filter, Py_NewRef(a_filter));
    Py_XSETREF(ensure_ready, Py_NewRef(a_ready));
    Py_XSETREF(report_type, (PyTypeObject *)Py_NewRef(a_report));
    Py_XSETREF(resolve, Py_NewRef(a_resolve));
    Py_XSETREF(finish, Py_NewRef(a_finish));
    Py_XSETREF(shared_guards, Py_NewRef(a_shared));
    Py_XSETREF(make_guard, Py_NewRef(a_make));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "Hand over the context variable, modules and callbacks the hot path uses."},
    {"guard", (PyCFunction)(void (*)(void))guard_lookup, METH_FASTCALL | METH_KEYWORDS,
     "guard(name, *, policy=None, default=None)\n--\n\n"
     "errpolicy.guard: the shared Guard of ``name`` from a dict lookup; any other call\n"
     "goes to the Python function handed to setup() as make_guard."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "errpolicy._speedups",
    .m_doc = "The guard's enter and exit in C; errpolicy/_core.py is the reference.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_filters = PyUnicode_InternFromString("filters");
    str_config = PyUnicode_InternFromString("_config");
    if (str_filters == NULL || str_config == NULL) {
        return NULL;
    }
    if (PyType_Ready(&ReportCore_Type) < 0 || PyType_Ready(&GuardCore_Type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "ReportCore", (PyObject *)&ReportCore_Type) < 0
        || PyModule_AddObjectRef(module, "GuardCore", (PyObject *)&GuardCore_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
