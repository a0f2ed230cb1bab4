/* errpolicy._speedups: the guard's enter and exit, guard() lookups and Event filling in C.
 *
 * The same logic as errpolicy/_core.py and errpolicy/_event.py (the reference
 * implementations, used when this module cannot be built or ERRPOLICY_PURE_PYTHON is
 * set); the test suite runs against both. Only per-entry and per-capture work lives
 * here: everything that happens when a guard captured something, or when the
 * configuration changed, is called back in Python through the callables handed to
 * setup().
 *
 * Why C at all: a guard entry must cost a fraction of warnings.catch_warnings().
 * In Python, the calls of __enter__ and __exit__ and making the report alone cost
 * about as much as that target allows.
 *
 * Multi-phase init (PEP 489): the types are heap types made per module object, and
 * what setup() hands over lives in the module's state, reached from a method through
 * its defining class (METH_METHOD), so two module objects (subinterpreters, a test
 * importing it afresh) never share a reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pythread.h>

#define EVENT_FIELDS 16     /* errpolicy.Event's fields, in declaration order */
#define EVENT_REQUIRED 14   /* the last two (guard, classified_by) have defaults */

typedef struct {
    PyTypeObject *report_core; /* ReportCore, the base of errpolicy.Report */
    PyTypeObject *guard_core;  /* GuardCore, the base of errpolicy.Guard */
    /* What setup() hands over. */
    PyObject *active;          /* the ContextVar holding the innermost frame */
    PyObject *warnings_dict;   /* warnings.__dict__, to read "filters" */
    PyObject *front_filter;    /* the entry errpolicy keeps first in warnings.filters */
    PyObject *ensure_ready;    /* callable(): install hooks, put the filter first */
    PyObject *config_dict;     /* errpolicy._config.__dict__, to read "_config" */
    PyObject *resolve;         /* callable(guard, config) -> policy (and caches it) */
    PyObject *finish;          /* callable(report, exc): sink, raise or annotate */
    PyTypeObject *report_type; /* errpolicy.Report, a subclass of ReportCore */
    PyObject *shared_guards;   /* dict: name -> the shared Guard of that name */
    PyObject *make_guard;      /* the Python errpolicy.guard, for every other call */
    PyTypeObject *policy_type; /* errpolicy.Policy: its guard caches are read here */
    /* What setup_event() hands over: Event and where its slots are. */
    PyTypeObject *event_type;
    Py_ssize_t event_offsets[EVENT_FIELDS];
    PyObject *event_defaults; /* (None, "default"): guard and classified_by */
    PyObject *raise_action;   /* errpolicy.Action.RAISE */
    PyObject *event_names;    /* the field names, in declaration order */
    /* The thread id of the last entry as an int, reused while the same thread enters
     * again (a top-level entry would otherwise make a new int every time). Written
     * on the hot path: one reason the module still declares Py_MOD_GIL_USED. */
    unsigned long last_ident;
    PyObject *last_ident_obj;
    /* Interned names. */
    PyObject *str_filters;
    PyObject *str_config;
    PyObject *str_policy;
    PyObject *str_default;
    PyObject *str_guards;         /* Policy._guards: name -> Guard with policy= */
    PyObject *str_default_guards; /* Policy._default_guards: name -> Guard with default= */
    PyObject *str_classifiers;
    PyObject *str_max_events;
    PyObject *str_actions;
    PyObject *str_decide;
    PyObject *str_immediate;
    PyObject *str_scope;
    PyObject *str_classify;
    PyObject *str_keep_late;
    PyObject *str_raise_immediately;
} speedups_state;

/* Event's fields that a capture writes, by their index in declaration order. */
#define EVENT_SEVERITY 1
#define EVENT_ACTION 2
#define EVENT_GUARD 14

static struct PyModuleDef speedups_module;

static inline speedups_state *
state_of_module(PyObject *module)
{
    return (speedups_state *)PyModule_GetState(module);
}

static inline speedups_state *
state_of_class(PyTypeObject *defining_class)
{
    return (speedups_state *)PyType_GetModuleState(defining_class);
}

static int
not_set_up(speedups_state *st)
{
    if (st->active == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "errpolicy._speedups.setup() was not called");
        return 1;
    }
    return 0;
}

/* -- ReportCore: the fields of a Report that the hot path touches ------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *name;
    PyObject *policy;
    PyObject *config;
    PyObject *token;
    PyObject *head;
    /* Made on the first capture; NULL reads as None. */
    PyObject *counts;
    PyObject *raised;
    PyObject *tail;
    PyObject *immediate_violation;
    Py_ssize_t dropped;
    char open;
} ReportCore;

/* A heap type's instances own a reference to their type; for a Python subclass
 * (errpolicy.Report, errpolicy.Guard) of a heap base, CPython leaves the visit and
 * the decref of the type to the base, that is, here. */
static int
report_traverse(ReportCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->policy);
    Py_VISIT(self->config);
    Py_VISIT(self->token);
    Py_VISIT(self->head);
    Py_VISIT(self->counts);
    Py_VISIT(self->raised);
    Py_VISIT(self->tail);
    Py_VISIT(self->immediate_violation);
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
    Py_CLEAR(self->counts);
    Py_CLEAR(self->raised);
    Py_CLEAR(self->tail);
    Py_CLEAR(self->immediate_violation);
    return 0;
}

static void
report_dealloc(ReportCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    report_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef report_members[] = {
    {"name", T_OBJECT, offsetof(ReportCore, name), 0, "The guard's name."},
    {"policy", T_OBJECT, offsetof(ReportCore, policy), 0, "The policy that decides."},
    {"_config", T_OBJECT, offsetof(ReportCore, config), 0, NULL},
    {"_token", T_OBJECT, offsetof(ReportCore, token), 0, NULL},
    {"_head", T_OBJECT, offsetof(ReportCore, head), 0, NULL},
    {"_open", T_BOOL, offsetof(ReportCore, open), 0, NULL},
    {"_counts", T_OBJECT, offsetof(ReportCore, counts), 0, NULL},
    {"_raised", T_OBJECT, offsetof(ReportCore, raised), 0, NULL},
    {"_tail", T_OBJECT, offsetof(ReportCore, tail), 0, NULL},
    {"_dropped", T_PYSSIZET, offsetof(ReportCore, dropped), 0, NULL},
    {"immediate_violation", T_OBJECT, offsetof(ReportCore, immediate_violation), 0,
     "The violation raised from inside the block in immediate mode."},
    {NULL},
};

static int
event_ready(speedups_state *st);

#define EVENT_SLOT(st, event, i) (*(PyObject **)((char *)(event) + (st)->event_offsets[(i)]))

static int
one_argument(const char *what, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "%s takes one positional argument", what);
        return 0;
    }
    return 1;
}

/* Report.takes(event): open, and in the policy's scope. */
static PyObject *
report_takes(ReportCore *self, PyTypeObject *defining_class, PyObject *const *args,
             Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = state_of_class(defining_class);
    if (!one_argument("takes()", nargs, kwnames)) {
        return NULL;
    }
    if (!self->open) {
        Py_RETURN_FALSE;
    }
    if (self->policy == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a report without a policy");
        return NULL;
    }
    PyObject *scope = PyObject_GetAttr(self->policy, st->str_scope);
    if (scope == NULL) {
        return NULL;
    }
    if (scope == Py_None) {
        Py_DECREF(scope);
        Py_RETURN_TRUE;
    }
    PyObject *answer = PyObject_CallOneArg(scope, args[0]);
    Py_DECREF(scope);
    if (answer == NULL) {
        return NULL;
    }
    int truth = PyObject_IsTrue(answer);
    Py_DECREF(answer);
    if (truth < 0) {
        return NULL;
    }
    return PyBool_FromLong(truth);
}

/* The policy's action for a severity: Policy._actions, else Policy._decide(). */
static PyObject *
decide(speedups_state *st, PyObject *policy, PyObject *severity)
{
    PyObject *actions = PyObject_GetAttr(policy, st->str_actions);
    if (actions == NULL) {
        return NULL;
    }
    PyObject *action = PyDict_Check(actions) ? PyDict_GetItemWithError(actions, severity) : NULL;
    Py_XINCREF(action);
    Py_DECREF(actions);
    if (action == NULL && !PyErr_Occurred()) {
        action = PyObject_CallMethodOneArg(policy, st->str_decide, severity);
    }
    return action;
}

static int
set_slot(speedups_state *st, PyObject *event, int index, PyObject *value)
{
    Py_XSETREF(EVENT_SLOT(st, event, index), Py_NewRef(value));
    return 0;
}

/* Count the event and keep it: the same steps as the Python twin takes under its lock.
 * Nothing here calls back into Python (the keys hash and compare in C: Severity is an
 * int, Action hashes by identity), so under the GIL no reader sees it half done; the
 * rare overflow into the tail goes through Report._keep_late, which takes the lock. */
static int
keep(speedups_state *st, ReportCore *self, PyObject *draft, PyObject *action,
     PyObject *severity, Py_ssize_t max_events)
{
    PyObject *key = PyTuple_Pack(2, action, severity);
    if (key == NULL) {
        return -1;
    }
    if (self->counts == NULL || self->counts == Py_None) {
        Py_XSETREF(self->counts, PyDict_New());
        if (self->counts == NULL) {
            Py_DECREF(key);
            return -1;
        }
    }
    if (!PyDict_Check(self->counts)) {
        Py_DECREF(key);
        PyErr_SetString(PyExc_TypeError, "Report._counts must be a dict");
        return -1;
    }
    PyObject *count = PyDict_GetItemWithError(self->counts, key); /* borrowed */
    Py_ssize_t n = 0;
    if (count != NULL) {
        n = PyLong_AsSsize_t(count);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    PyObject *next = PyLong_FromSsize_t(n + 1);
    int failed = next == NULL || PyDict_SetItem(self->counts, key, next) < 0;
    Py_XDECREF(next);
    Py_DECREF(key);
    if (failed) {
        return -1;
    }
    if (action == st->raise_action) {
        if (self->raised == NULL || self->raised == Py_None) {
            Py_XSETREF(self->raised, PyList_New(0));
            if (self->raised == NULL) {
                return -1;
            }
        }
        if (!PyList_Check(self->raised)) {
            PyErr_SetString(PyExc_TypeError, "Report._raised must be a list");
            return -1;
        }
        if (PyList_GET_SIZE(self->raised) < max_events
            && PyList_Append(self->raised, draft) < 0) {
            return -1;
        }
    }
    if (self->head == NULL || self->head == Py_None) {
        PyObject *head = PyList_New(1);
        if (head == NULL) {
            return -1;
        }
        PyList_SET_ITEM(head, 0, Py_NewRef(draft));
        Py_XSETREF(self->head, head);
        return 0;
    }
    if (PyList_Check(self->head) && PyList_GET_SIZE(self->head) < (max_events + 1) / 2) {
        return PyList_Append(self->head, draft);
    }
    PyObject *limit = PyLong_FromSsize_t(max_events);
    if (limit == NULL) {
        return -1;
    }
    PyObject *done =
        PyObject_CallMethodObjArgs((PyObject *)self, st->str_keep_late, draft, limit, NULL);
    Py_DECREF(limit);
    if (done == NULL) {
        return -1;
    }
    Py_DECREF(done);
    return 0;
}

/* Report.capture(draft): classify, decide, keep; raise at once in immediate mode. */
static PyObject *
report_capture(ReportCore *self, PyTypeObject *defining_class, PyObject *const *args,
               Py_ssize_t nargs, PyObject *kwnames)
{
    speedups_state *st = state_of_class(defining_class);
    if (!one_argument("capture()", nargs, kwnames) || !event_ready(st)) {
        return NULL;
    }
    PyObject *draft = args[0];
    if (!PyObject_TypeCheck(draft, st->event_type)) {
        PyErr_SetString(PyExc_TypeError, "capture() takes an Event");
        return NULL;
    }
    if (self->config == NULL || self->policy == NULL || self->name == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a report without a configuration or policy");
        return NULL;
    }
    PyObject *classifiers = PyObject_GetAttr(self->config, st->str_classifiers);
    if (classifiers == NULL) {
        return NULL;
    }
    int custom = PyObject_IsTrue(classifiers);
    Py_DECREF(classifiers);
    if (custom < 0) {
        return NULL;
    }
    PyObject *severity;
    if (custom) {
        severity = PyObject_CallMethodOneArg((PyObject *)self, st->str_classify, draft);
    }
    else {
        severity = Py_XNewRef(EVENT_SLOT(st, draft, EVENT_SEVERITY));
        if (severity == NULL) {
            PyErr_SetString(PyExc_AttributeError, "the event has no severity");
        }
    }
    if (severity == NULL) {
        return NULL;
    }
    PyObject *action = decide(st, self->policy, severity);
    if (action == NULL) {
        Py_DECREF(severity);
        return NULL;
    }
    /* The draft is not yet visible to anyone else, so it is finished in place. */
    set_slot(st, draft, EVENT_ACTION, action);
    set_slot(st, draft, EVENT_GUARD, self->name);
    PyObject *limit = PyObject_GetAttr(self->config, st->str_max_events);
    Py_ssize_t max_events = limit == NULL ? -1 : PyLong_AsSsize_t(limit);
    Py_XDECREF(limit);
    if (max_events == -1 && PyErr_Occurred()) {
        Py_DECREF(severity);
        Py_DECREF(action);
        return NULL;
    }
    int kept = keep(st, self, draft, action, severity, max_events);
    int raising = action == st->raise_action;
    Py_DECREF(severity);
    Py_DECREF(action);
    if (kept < 0) {
        return NULL;
    }
    if (raising && (self->immediate_violation == NULL || self->immediate_violation == Py_None)) {
        PyObject *immediate = PyObject_GetAttr(self->policy, st->str_immediate);
        if (immediate == NULL) {
            return NULL;
        }
        int now = PyObject_IsTrue(immediate);
        Py_DECREF(immediate);
        if (now < 0) {
            return NULL;
        }
        if (now) {
            PyObject *done =
                PyObject_CallMethodOneArg((PyObject *)self, st->str_raise_immediately, draft);
            if (done == NULL) {
                return NULL;
            }
            Py_DECREF(done);
        }
    }
    return Py_NewRef(draft);
}

static PyMethodDef report_methods[] = {
    {"takes", (PyCFunction)(void (*)(void))report_takes,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "takes($self, event, /)\n--\n\n"
     "Whether this report captures ``event`` (open, and in the policy's scope)."},
    {"capture", (PyCFunction)(void (*)(void))report_capture,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "capture($self, draft, /)\n--\n\n"
     "Classify and decide ``draft``, keep it, and raise at once in immediate mode."},
    {NULL},
};

static PyType_Slot report_slots[] = {
    {Py_tp_doc, "The fields of a Report read and written on every guard entry."},
    {Py_tp_traverse, report_traverse},
    {Py_tp_clear, report_clear},
    {Py_tp_dealloc, report_dealloc},
    {Py_tp_members, report_members},
    {Py_tp_methods, report_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec report_spec = {
    .name = "errpolicy._speedups.ReportCore",
    .basicsize = sizeof(ReportCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = report_slots,
};

/* -- GuardCore: a guard's name, policies and cached resolution; enter and exit ----- */

typedef struct {
    PyObject_HEAD
    PyObject *name;
    PyObject *policy;
    PyObject *default_;
    /* (config, policy): the policy last resolved and the configuration it was resolved
       against, one object so that no reader pairs one thread's policy with another's
       configuration. */
    PyObject *resolved;
} GuardCore;

static int
guard_traverse(GuardCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->policy);
    Py_VISIT(self->default_);
    Py_VISIT(self->resolved);
    return 0;
}

static int
guard_clear(GuardCore *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->policy);
    Py_CLEAR(self->default_);
    Py_CLEAR(self->resolved);
    return 0;
}

static void
guard_dealloc(GuardCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    guard_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* True if errpolicy's filter is first in warnings.filters (then the hooks are in). */
static int
hooks_ready(speedups_state *st)
{
    PyObject *filters = PyDict_GetItemWithError(st->warnings_dict, st->str_filters); /* borrowed */
    if (filters == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return PyList_Check(filters) && PyList_GET_SIZE(filters) > 0
           && PyList_GET_ITEM(filters, 0) == st->front_filter;
}

/* The policy for this entry: cached per configuration object, else resolve() in Python. */
static PyObject *
entry_policy(speedups_state *st, GuardCore *self, PyObject *config)
{
    PyObject *pair = self->resolved;
    if (pair != NULL && PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2
        && PyTuple_GET_ITEM(pair, 0) == config) {
        return Py_NewRef(PyTuple_GET_ITEM(pair, 1));
    }
    return PyObject_CallFunctionObjArgs(st->resolve, (PyObject *)self, config, NULL);
}

static PyObject *
guard_enter(GuardCore *self, PyTypeObject *defining_class, PyObject *const *args,
            Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "__enter__ takes no arguments");
        return NULL;
    }
    speedups_state *st = state_of_class(defining_class);
    if (not_set_up(st)) {
        return NULL;
    }
    int ready = hooks_ready(st);
    if (ready < 0) {
        return NULL;
    }
    if (!ready) {
        PyObject *done = PyObject_CallNoArgs(st->ensure_ready);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    PyObject *config = PyDict_GetItemWithError(st->config_dict, st->str_config); /* borrowed */
    if (config == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "errpolicy._config has no _config");
        }
        return NULL;
    }
    Py_INCREF(config);
    PyObject *policy = entry_policy(st, self, config);
    if (policy == NULL) {
        Py_DECREF(config);
        return NULL;
    }
    PyTypeObject *report_type = st->report_type;
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
    if (PyContextVar_Get(st->active, Py_None, &parent) < 0) {
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
    if (st->last_ident_obj == NULL || st->last_ident != ident) {
        PyObject *py_ident = PyLong_FromUnsignedLong(ident);
        if (py_ident == NULL) {
            Py_DECREF(parent);
            Py_DECREF(report);
            return NULL;
        }
        Py_XSETREF(st->last_ident_obj, py_ident);
        st->last_ident = ident;
    }
    PyObject *frame =
        PyTuple_Pack(4, (PyObject *)report, parent, st->last_ident_obj, (PyObject *)self);
    Py_DECREF(parent);
    if (frame == NULL) {
        Py_DECREF(report);
        return NULL;
    }
    PyObject *token = PyContextVar_Set(st->active, frame);
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
guard_exit(GuardCore *self, PyTypeObject *defining_class, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "__exit__ takes 3 positional arguments, not %zd", nargs);
        return NULL;
    }
    speedups_state *st = state_of_class(defining_class);
    if (not_set_up(st)) {
        return NULL;
    }
    PyObject *frame = NULL;
    if (PyContextVar_Get(st->active, Py_None, &frame) < 0) {
        return NULL;
    }
    if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 4
        || PyTuple_GET_ITEM(frame, 3) != (PyObject *)self
        || !PyObject_TypeCheck(PyTuple_GET_ITEM(frame, 0), st->report_core)
        || ((ReportCore *)PyTuple_GET_ITEM(frame, 0))->token == NULL
        || ((ReportCore *)PyTuple_GET_ITEM(frame, 0))->token == Py_None) {
        Py_DECREF(frame);
        return not_innermost(self);
    }
    ReportCore *report = (ReportCore *)Py_NewRef(PyTuple_GET_ITEM(frame, 0));
    Py_DECREF(frame);
    PyObject *token = report->token;
    report->token = NULL;
    int reset = PyContextVar_Reset(st->active, token);
    Py_DECREF(token);
    report->open = 0;
    if (reset < 0) {
        Py_DECREF(report);
        return NULL;
    }
    if (report->head != NULL && report->head != Py_None) { /* captured anything? */
        PyObject *done =
            PyObject_CallFunctionObjArgs(st->finish, (PyObject *)report, args[1], NULL);
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
    {"__enter__", (PyCFunction)(void (*)(void))guard_enter,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "Open the guard: a fresh Report, made the innermost frame here."},
    {"__exit__", (PyCFunction)(void (*)(void))guard_exit,
     METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     "Close the guard; if it captured anything, deliver, raise or annotate."},
    {NULL},
};

static PyMemberDef guard_members[] = {
    {"name", T_OBJECT, offsetof(GuardCore, name), 0, "The guard's name."},
    {"_policy", T_OBJECT, offsetof(GuardCore, policy), 0, NULL},
    {"_default", T_OBJECT, offsetof(GuardCore, default_), 0, NULL},
    {"_resolved", T_OBJECT, offsetof(GuardCore, resolved), 0, NULL},
    {NULL},
};

static PyType_Slot guard_slots[] = {
    {Py_tp_doc, "A guard's enter and exit."},
    {Py_tp_traverse, guard_traverse},
    {Py_tp_clear, guard_clear},
    {Py_tp_dealloc, guard_dealloc},
    {Py_tp_methods, guard_methods},
    {Py_tp_members, guard_members},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec guard_spec = {
    .name = "errpolicy._speedups.GuardCore",
    .basicsize = sizeof(GuardCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = guard_slots,
};

/* -- guard(name, ...): a Guard without a Python call when one is kept --------------- */

/* The Guard kept for `name` in the policy's cache attribute `which`, or NULL
 * (borrowed, no error set) when there is none or the call is not a cacheable one. */
static PyObject *
cached_guard(speedups_state *st, PyObject *name, PyObject *policy, PyObject *which)
{
    if (st->policy_type == NULL || !Py_IS_TYPE(policy, st->policy_type)) {
        return NULL;
    }
    PyObject *cache = PyObject_GetAttr(policy, which);
    if (cache == NULL) {
        PyErr_Clear(); /* the Python path reports whatever is wrong */
        return NULL;
    }
    PyObject *found = PyDict_Check(cache) ? PyDict_GetItemWithError(cache, name) : NULL;
    Py_DECREF(cache); /* the policy keeps the dict, the dict keeps the guard */
    if (found == NULL) {
        PyErr_Clear();
    }
    return found;
}

static int
keyword_is(speedups_state *st, PyObject *kw, PyObject *interned, const char *text)
{
    return kw == interned || PyUnicode_CompareWithASCIIString(kw, text) == 0;
}

static PyObject *
guard_lookup(PyObject *module, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    speedups_state *st = state_of_module(module);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (not_set_up(st)) {
        return NULL;
    }
    if (nargs == 1 && PyUnicode_CheckExact(args[0])) {
        PyObject *found = NULL;
        if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) {
            found = PyDict_GetItemWithError(st->shared_guards, args[0]); /* borrowed */
            if (found == NULL && PyErr_Occurred()) {
                return NULL;
            }
        }
        else if (PyTuple_GET_SIZE(kwnames) == 1 && args[1] != Py_None) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, 0);
            if (keyword_is(st, kw, st->str_policy, "policy")) {
                found = cached_guard(st, args[0], args[1], st->str_guards);
            }
            else if (keyword_is(st, kw, st->str_default, "default")) {
                found = cached_guard(st, args[0], args[1], st->str_default_guards);
            }
        }
        if (found != NULL) {
            return Py_NewRef(found);
        }
    }
    return PyObject_Vectorcall(st->make_guard, args, nargsf, kwnames);
}

/* -- Event: its slots filled in one call ------------------------------------------- */

static int
event_ready(speedups_state *st)
{
    if (st->event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "errpolicy._speedups.setup_event() was not called");
        return 0;
    }
    return 1;
}

/* Set every slot of `event` from args (EVENT_REQUIRED to EVENT_FIELDS of them). */
static int
fill(speedups_state *st, PyObject *event, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < EVENT_REQUIRED || nargs > EVENT_FIELDS) {
        PyErr_Format(PyExc_TypeError, "an Event takes %d to %d fields, not %zd",
                     EVENT_REQUIRED, EVENT_FIELDS, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < EVENT_FIELDS; i++) {
        PyObject *value = i < nargs ? args[i]
                                    : PyTuple_GET_ITEM(st->event_defaults, i - EVENT_REQUIRED);
        PyObject **slot = (PyObject **)((char *)event + st->event_offsets[i]);
        Py_XSETREF(*slot, Py_NewRef(value));
    }
    return 0;
}

static PyObject *
new_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *st = state_of_module(module);
    if (!event_ready(st)) {
        return NULL;
    }
    PyObject *event = st->event_type->tp_alloc(st->event_type, 0);
    if (event == NULL) {
        return NULL;
    }
    if (fill(st, event, args, nargs) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

static PyObject *
fill_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *st = state_of_module(module);
    if (!event_ready(st)) {
        return NULL;
    }
    if (nargs < 1 || !PyObject_TypeCheck(args[0], st->event_type)) {
        PyErr_SetString(PyExc_TypeError, "fill_event(event, *fields): event must be an Event");
        return NULL;
    }
    if (fill(st, args[0], args + 1, nargs - 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Event(...) by keywords went through type.__call__: a dict of 16 keywords, then a
 * Python __init__ binding them by name, about a fifth of capturing a warning. This
 * is the Event type's own vectorcall (tp_vectorcall, set by setup_event): the
 * arguments bound in C, the same checks as the __init__ signature. A C function
 * pointer on the type carries no context, so the module whose state it reads is
 * kept here; any other type (a subclass does not inherit tp_vectorcall, another
 * interpreter's Event) goes the usual way. */
static speedups_state *event_owner;

/* type.__call__ the usual way, for calls event_vectorcall does not take. */
static PyObject *
call_type(PyObject *type, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    PyObject *kwargs = NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nkw > 0) {
        kwargs = PyDict_New();
        for (Py_ssize_t k = 0; kwargs != NULL && k < nkw; k++) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, k), args[nargs + k]) < 0) {
                Py_CLEAR(kwargs);
            }
        }
        if (kwargs == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
    }
    PyObject *made = PyType_Type.tp_call(type, tuple, kwargs);
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return made;
}

static Py_ssize_t
field_index(speedups_state *st, PyObject *name)
{
    for (Py_ssize_t j = 0; j < EVENT_FIELDS; j++) { /* keywords are interned: usually */
        if (PyTuple_GET_ITEM(st->event_names, j) == name) {
            return j;
        }
    }
    for (Py_ssize_t j = 0; j < EVENT_FIELDS; j++) {
        int cmp = PyObject_RichCompareBool(PyTuple_GET_ITEM(st->event_names, j), name, Py_EQ);
        if (cmp != 0) {
            return cmp < 0 ? -2 : j;
        }
    }
    return -1;
}

static PyObject *
event_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    speedups_state *st = event_owner;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (st == NULL || (PyTypeObject *)type != st->event_type || st->event_names == NULL) {
        return call_type(type, args, nargs, kwnames);
    }
    if (nargs > EVENT_FIELDS) {
        PyErr_Format(PyExc_TypeError, "Event() takes at most %d arguments (%zd given)",
                     EVENT_FIELDS, nargs);
        return NULL;
    }
    PyObject *values[EVENT_FIELDS] = {NULL};
    for (Py_ssize_t i = 0; i < nargs; i++) {
        values[i] = args[i];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j = field_index(st, name);
        if (j == -2) {
            return NULL;
        }
        if (j < 0) {
            PyErr_Format(PyExc_TypeError, "Event() got an unexpected keyword argument %R", name);
            return NULL;
        }
        if (values[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "Event() got multiple values for argument %R", name);
            return NULL;
        }
        values[j] = args[nargs + k];
    }
    for (Py_ssize_t j = 0; j < EVENT_FIELDS; j++) {
        if (values[j] != NULL) {
            continue;
        }
        if (j < EVENT_REQUIRED) {
            PyErr_Format(PyExc_TypeError, "Event() missing required argument %R",
                         PyTuple_GET_ITEM(st->event_names, j));
            return NULL;
        }
        values[j] = PyTuple_GET_ITEM(st->event_defaults, j - EVENT_REQUIRED);
    }
    PyObject *event = st->event_type->tp_alloc(st->event_type, 0);
    if (event == NULL) {
        return NULL;
    }
    if (fill(st, event, values, EVENT_FIELDS) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

static void
release_event_type(speedups_state *st)
{
    if (event_owner == st) {
        if (st->event_type != NULL) {
            st->event_type->tp_vectorcall = NULL;
        }
        event_owner = NULL;
    }
}

/* setup_event(event_type, names, defaults, raise_action): where each named slot of the
 * type is, and the action that counts as raised (for Report.capture). */
static PyObject *
setup_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *st = state_of_module(module);
    if (nargs != 4 || !PyType_Check(args[0]) || !PyTuple_CheckExact(args[1])
        || PyTuple_GET_SIZE(args[1]) != EVENT_FIELDS || !PyTuple_CheckExact(args[2])
        || PyTuple_GET_SIZE(args[2]) != EVENT_FIELDS - EVENT_REQUIRED) {
        PyErr_Format(PyExc_TypeError,
                     "setup_event(event_type, names, defaults, raise_action): a type, %d names, "
                     "%d defaults, Action.RAISE",
                     EVENT_FIELDS, EVENT_FIELDS - EVENT_REQUIRED);
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    Py_ssize_t offsets[EVENT_FIELDS];
    for (Py_ssize_t i = 0; i < EVENT_FIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(args[1], i);
        /* The slot's own descriptor, in the class that declares it (a subclass could
         * shadow the name with something else). */
        PyObject *descr = PyUnicode_Check(name) ? PyDict_GetItemWithError(type->tp_dict, name)
                                                : NULL;
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)descr)->d_common.d_type != type
            || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_TypeError, "setup_event(): %R is not a slot of %R", name,
                             args[0]);
            }
            return NULL;
        }
        offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    memcpy(st->event_offsets, offsets, sizeof(offsets));
    release_event_type(st);
    Py_XSETREF(st->event_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(st->event_names, Py_NewRef(args[1]));
    Py_XSETREF(st->event_defaults, Py_NewRef(args[2]));
    Py_XSETREF(st->raise_action, Py_NewRef(args[3]));
    /* Exactly this type: tp_vectorcall is never inherited, so subclasses keep
     * type.__call__ and their own __init__. */
    type->tp_vectorcall = event_vectorcall;
    event_owner = st;
    Py_RETURN_NONE;
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
setup(PyObject *module, PyObject *args, PyObject *kwargs)
{
    speedups_state *st = state_of_module(module);
    static char *keywords[] = {"active",        "warnings_module", "front_filter",
                               "ensure_ready",  "config_module",   "report_type",
                               "resolve",       "finish",          "shared_guards",
                               "make_guard",    "policy_type",     NULL};
    PyObject *a_active, *a_warnings, *a_filter, *a_ready, *a_config, *a_report, *a_resolve,
        *a_finish, *a_shared, *a_make, *a_policy;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOOOOO!OO!:setup", keywords, &a_active,
                                     &a_warnings, &a_filter, &a_ready, &a_config, &a_report,
                                     &a_resolve, &a_finish, &PyDict_Type, &a_shared, &a_make,
                                     &PyType_Type, &a_policy)) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(a_active)) {
        PyErr_SetString(PyExc_TypeError, "setup(): active must be a ContextVar");
        return NULL;
    }
    if (!PyType_Check(a_report)
        || !PyType_IsSubtype((PyTypeObject *)a_report, st->report_core)) {
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
    Py_XSETREF(st->warnings_dict, w_dict);
    Py_XSETREF(st->config_dict, c_dict);
    Py_XSETREF(st->active, Py_NewRef(a_active));
    Py_XSETREF(st->front_filter, Py_NewRef(a_filter));
    Py_XSETREF(st->ensure_ready, Py_NewRef(a_ready));
    Py_XSETREF(st->report_type, (PyTypeObject *)Py_NewRef(a_report));
    Py_XSETREF(st->resolve, Py_NewRef(a_resolve));
    Py_XSETREF(st->finish, Py_NewRef(a_finish));
    Py_XSETREF(st->shared_guards, Py_NewRef(a_shared));
    Py_XSETREF(st->make_guard, Py_NewRef(a_make));
    Py_XSETREF(st->policy_type, (PyTypeObject *)Py_NewRef(a_policy));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_VARARGS | METH_KEYWORDS,
     "Hand over the context variable, modules and callbacks the hot path uses."},
    {"guard", (PyCFunction)(void (*)(void))guard_lookup, METH_FASTCALL | METH_KEYWORDS,
     "guard(name, *, policy=None, default=None)\n--\n\n"
     "errpolicy.guard: the shared Guard of ``name``, or the one a Policy keeps for\n"
     "``name`` (``policy=`` or ``default=`` alone), from dict lookups; any other call\n"
     "goes to the Python function handed to setup() as make_guard."},
    {"setup_event", (PyCFunction)(void (*)(void))setup_event, METH_FASTCALL,
     "setup_event(event_type, names, defaults, raise_action): where new_event, fill_event\n"
     "and Report.capture write."},
    {"new_event", (PyCFunction)(void (*)(void))new_event, METH_FASTCALL,
     "new_event(*fields): an Event from its fields in declaration order (the last two\n"
     "may be left out), without calling __init__."},
    {"fill_event", (PyCFunction)(void (*)(void))fill_event, METH_FASTCALL,
     "fill_event(event, *fields): set every field of an Event (its __init__)."},
    {NULL},
};

/* -- module state and init ---------------------------------------------------------- */

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    speedups_state *st = state_of_module(module);
    if (st == NULL) {
        return 0;
    }
    Py_VISIT(st->report_core);
    Py_VISIT(st->guard_core);
    Py_VISIT(st->active);
    Py_VISIT(st->warnings_dict);
    Py_VISIT(st->front_filter);
    Py_VISIT(st->ensure_ready);
    Py_VISIT(st->config_dict);
    Py_VISIT(st->resolve);
    Py_VISIT(st->finish);
    Py_VISIT(st->report_type);
    Py_VISIT(st->shared_guards);
    Py_VISIT(st->make_guard);
    Py_VISIT(st->policy_type);
    Py_VISIT(st->event_type);
    Py_VISIT(st->event_defaults);
    Py_VISIT(st->raise_action);
    Py_VISIT(st->event_names);
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *st = state_of_module(module);
    if (st == NULL) {
        return 0;
    }
    Py_CLEAR(st->report_core);
    Py_CLEAR(st->guard_core);
    Py_CLEAR(st->active);
    Py_CLEAR(st->warnings_dict);
    Py_CLEAR(st->front_filter);
    Py_CLEAR(st->ensure_ready);
    Py_CLEAR(st->config_dict);
    Py_CLEAR(st->resolve);
    Py_CLEAR(st->finish);
    Py_CLEAR(st->report_type);
    Py_CLEAR(st->shared_guards);
    Py_CLEAR(st->make_guard);
    Py_CLEAR(st->policy_type);
    release_event_type(st);
    Py_CLEAR(st->event_type);
    Py_CLEAR(st->event_defaults);
    Py_CLEAR(st->raise_action);
    Py_CLEAR(st->event_names);
    Py_CLEAR(st->last_ident_obj);
    Py_CLEAR(st->str_classifiers);
    Py_CLEAR(st->str_max_events);
    Py_CLEAR(st->str_actions);
    Py_CLEAR(st->str_decide);
    Py_CLEAR(st->str_immediate);
    Py_CLEAR(st->str_scope);
    Py_CLEAR(st->str_classify);
    Py_CLEAR(st->str_keep_late);
    Py_CLEAR(st->str_raise_immediately);
    Py_CLEAR(st->str_filters);
    Py_CLEAR(st->str_config);
    Py_CLEAR(st->str_policy);
    Py_CLEAR(st->str_default);
    Py_CLEAR(st->str_guards);
    Py_CLEAR(st->str_default_guards);
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

static int
intern(PyObject **where, const char *text)
{
    *where = PyUnicode_InternFromString(text);
    return *where == NULL ? -1 : 0;
}

static int
speedups_exec(PyObject *module)
{
    speedups_state *st = state_of_module(module);
    if (intern(&st->str_filters, "filters") < 0 || intern(&st->str_config, "_config") < 0
        || intern(&st->str_policy, "policy") < 0 || intern(&st->str_default, "default") < 0
        || intern(&st->str_guards, "_guards") < 0
        || intern(&st->str_default_guards, "_default_guards") < 0
        || intern(&st->str_classifiers, "classifiers") < 0
        || intern(&st->str_max_events, "max_events") < 0
        || intern(&st->str_actions, "_actions") < 0 || intern(&st->str_decide, "_decide") < 0
        || intern(&st->str_immediate, "immediate") < 0 || intern(&st->str_scope, "scope") < 0
        || intern(&st->str_classify, "_classify") < 0
        || intern(&st->str_keep_late, "_keep_late") < 0
        || intern(&st->str_raise_immediately, "_raise_immediately") < 0) {
        return -1;
    }
    st->report_core =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &report_spec, NULL);
    if (st->report_core == NULL) {
        return -1;
    }
    st->guard_core = (PyTypeObject *)PyType_FromModuleAndSpec(module, &guard_spec, NULL);
    if (st->guard_core == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "ReportCore", (PyObject *)st->report_core) < 0
        || PyModule_AddObjectRef(module, "GuardCore", (PyObject *)st->guard_core) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
#ifdef Py_mod_gil
    /* Declared on purpose: no free-threaded build can be tested here yet. The state
     * above is only written by setup()/setup_event() at import, and the hot path reads
     * it and touches per-call objects; flip this to Py_MOD_GIL_NOT_USED once the suite
     * (tests/core, with its thread stress tests) passes on a free-threaded build. */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "errpolicy._speedups",
    .m_doc = "The guard's enter and exit in C; errpolicy/_core.py is the reference.",
    .m_size = sizeof(speedups_state),
    .m_methods = module_methods,
    .m_slots = speedups_slots,
    .m_traverse = speedups_traverse,
    .m_clear = speedups_clear,
    .m_free = speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
