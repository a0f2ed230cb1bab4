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
#include <unistd.h> /* getpid */

#define EVENT_FIELDS 16     /* errpolicy.Event's fields, in declaration order */
#define EVENT_REQUIRED 14   /* the last two (guard, classified_by) have defaults */

/* What an event takes from a record template, borrowed from it (`lineno` and `thread`
 * already as the event has them: 0 for a false value). */
struct template_view {
    PyObject *name, *levelno, *pathname, *lineno, *thread;
    int has_task; /* the template has taskName (Python 3.12+) */
};

typedef struct {
    PyTypeObject *report_core; /* ReportCore, the base of errpolicy.Report */
    PyTypeObject *guard_core;  /* GuardCore, the base of errpolicy.Guard */
    PyTypeObject *pending_type;  /* PendingRecord: an event's record, not made yet */
    PyTypeObject *original_type; /* OriginalSlot: Event.original, making it on first read */
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
    PyObject *hidden;          /* errpolicy._state.hidden: [the frame the collector hides] */
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
    /* What setup_direct() hands over (log_direct), and set_null_sink()'s type. */
    struct direct_state {
        PyObject *python;       /* errpolicy._direct's log_direct: every call not taken here */
        PyObject *after;        /* _direct._after(logger, record, layer, taken) */
        PyObject *direct_dict;  /* errpolicy._direct.__dict__: what tests may patch, read per call */
        PyObject *logging_dict; /* logging.__dict__: the logging.log* switches, _startTime */
        PyObject *layers;       /* errpolicy._hooks._layers */
        PyObject *placed;       /* errpolicy._hooks._placed */
        PyObject *inside;       /* errpolicy._capture.call_handlers_inside */
        PyObject *handle;       /* logging.Logger.handle */
        PyObject *make_record;  /* logging.Logger.makeRecord */
        PyObject *record_type;  /* logging.LogRecord */
        PyObject *get_message;  /* logging.LogRecord.getMessage */
        PyObject *mapping;      /* collections.abc.Mapping */
        PyObject *threads;      /* threading._active: ident -> Thread */
        PyObject *level_names;  /* logging._levelToName (addLevelName changes it in place) */
        PyObject *modules;      /* sys.modules */
        PyObject *severities;   /* level -> Severity, for the levels it knows */
        PyObject *kept;         /* errpolicy._capture.RECORDS_KEPT */
        PyObject *announce;     /* errpolicy._capture._announce_kept */
        PyObject *violation;    /* errpolicy.PolicyViolation */
        PyObject *null_sink;    /* errpolicy.NullSink: a guard's exit skips finish() for it */
        PyObject *matcher;      /* errpolicy.match's logger() matcher type */
        PyObject *matcher_call; /* its __call__, answered here while it is this one */
        PyObject *instancecheck; /* abc.ABCMeta.__instancecheck__ */
        PyObject *abc_check;    /* _abc._abc_instancecheck, what it calls */
        PyObject *get_level_name; /* logging.getLevelName */
        PyObject *thread_name;  /* threading.Thread.name (a property reading _name) */
        PyObject *unnamed;      /* level -> "Level <level>", getLevelName's answer for them */
        /* The last call's template and its key: a template made for a key stays right
         * for it (everything else the record holds is set per call). */
        PyObject *last_logger, *last_name, *last_level, *last_pathname, *last_lineno,
            *last_msg, *last_keys, *last_template;
        struct template_view last_view;
        unsigned long last_ident;
        long last_pid;
        /* Types whose attributes were checked, and their version tags then: CPython
         * gives a type a new tag whenever it or a base changes, so an unchanged tag
         * means the same answers. The logger class's callHandlers is kept too. */
        struct seen_type {
            PyTypeObject *type; /* compared only, never dereferenced: tags are unique */
            unsigned int tag;
        } seen_logger, seen_record, seen_thread, seen_abc, seen_report, seen_matcher,
            seen_arg, seen_mapping;
        int logger_plain;     /* seen_logger reads disabled/filters/name from the instance dict */
        int arg_is_mapping;   /* isinstance(x, Mapping) for x of type seen_arg, at abc_token */
        long long abc_token;  /* abc.get_cache_token() when that answer was found */
        PyObject *cache_token; /* _abc.get_cache_token */
        PyObject *logger_call_handlers;
        PyObject *empty;        /* () */
        PyObject *zero;         /* 0 */
        PyObject *blank;        /* "" */
        PyObject *main_process; /* "MainProcess" */
        PyObject *source;       /* "logging" */
        PyObject *s_pathname, *s_lineno, *s_extra, *s_call_handlers, *s_slow, *s_handle,
            *s_make_record, *s_disabled, *s_filters, *s_factory, *s_log_threads,
            *s_log_processes, *s_log_multiprocessing, *s_get_message, *s_name, *s_templates,
            *s_time, *s_created, *s_msecs, *s_relative, *s_start_time, *s_args, *s_thread_name,
            *s_levelname, *s_process_name, *s_task_name, *s_levelno, *s_lineno_attr,
            *s_thread, *s_dict, *s_level_name, *s_py_process_name, *s_task_of_record,
            *s_py_task_name, *s_multiprocessing, *s_asyncio, *s_log_asyncio_tasks, *s_takes,
            *s_capture, *s_sink, *s_prefixes, *s_dunder_call, *s_instancecheck,
            *s_name_to_level, *s_getlevelname, *s_private_name, *s_class;
    } direct;
} speedups_state;

/* Event's fields that a capture writes, by their index in declaration order. */
#define EVENT_SEVERITY 1
#define EVENT_ACTION 2
#define EVENT_ORIGINAL 13
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

/* The frame the garbage collector hides while it runs finalizers, borrowed, or NULL. */
static inline PyObject *
hidden_frame(speedups_state *st)
{
    PyObject *hidden = st->hidden;
    if (hidden == NULL || !PyList_CheckExact(hidden) || PyList_GET_SIZE(hidden) != 1) {
        return NULL;
    }
    return PyList_GET_ITEM(hidden, 0);
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
        if (PyTuple_Check(parent) && PyTuple_GET_SIZE(parent) == 4
            && parent != hidden_frame(st)) {
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

static int
finish_is_idle(speedups_state *st, ReportCore *report, PyObject *exc);

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
    if (report->head != NULL && report->head != Py_None /* captured anything? */
        && !finish_is_idle(st, report, args[1])) {
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

/* -- log_direct: a log record handed straight to the innermost guard ------------------
 *
 * errpolicy/_direct.py's log_direct is the reference. This twin takes the calls that
 * the Python one would take by its short path AND that find the record's template
 * already made; every other call (no guard here, a hook or filter that could see the
 * difference, a record factory, a new template, odd arguments) goes to the Python
 * function unchanged, before anything observable happened. The record is made as
 * _direct._record makes it (a copy of the template, then its times, arguments, thread,
 * process and task), the event as the Python twin builds it, and the guards are
 * offered it by their own takes() and capture(). What follows when no guard takes
 * it (or a listener must hear of it) is _direct._after, shared with the Python twin. */

#define D(st) (&(st)->direct)

/* The clock LogRecord reads: time_ns() from Python 3.13, time() before. */
#if PY_VERSION_HEX >= 0x030D0000
#define TIME_NAME "_time_ns"
#else
#define TIME_NAME "_time"
#endif

/* A name of errpolicy._direct's module, read per call (tests patch its clocks). */
static PyObject *
direct_global(speedups_state *st, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(D(st)->direct_dict, name); /* borrowed */
    if (value == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_RuntimeError, "errpolicy._direct has no %U", name);
    }
    return value;
}

/* 1 if `attr` of `obj` is `expected`, 0 if not, -1 on error. */
static int
attr_is(PyObject *obj, PyObject *attr, PyObject *expected)
{
    PyObject *value = PyObject_GetAttr(obj, attr);
    if (value == NULL) {
        return -1;
    }
    int same = value == expected;
    Py_DECREF(value);
    return same;
}

/* The truth of logging.<name> (a missing one reads as `missing`), -1 on error. */
static int
logging_switch(speedups_state *st, PyObject *name, int missing)
{
    PyObject *value = PyDict_GetItemWithError(D(st)->logging_dict, name);
    if (value == NULL) {
        return PyErr_Occurred() ? -1 : missing;
    }
    return PyObject_IsTrue(value);
}

/* Whether `type` is the one seen, unchanged since (its version tag the same). A
 * change to a type or a base sets its tag to 0 (no valid tag) until a lookup gives it
 * a new one, never one it had (3.11: and clears Py_TPFLAGS_VALID_VERSION_TAG, a flag
 * 3.13 no longer sets). */
static inline int
unchanged(struct seen_type *seen, PyTypeObject *type)
{
    return seen->type == type && seen->tag != 0 && type->tp_version_tag == seen->tag;
}

/* Remember `type` as checked (after lookups on it, which give it a tag). */
static inline void
seen_now(struct seen_type *seen, PyTypeObject *type)
{
    seen->type = type;
    seen->tag = type->tp_version_tag;
}

/* isinstance(obj, collections.abc.Mapping): ABCMeta.__instancecheck__'s own call of
 * _abc._abc_instancecheck, without its Python frame, while it is the stdlib's. */
static int
is_mapping(speedups_state *st, PyObject *obj)
{
    struct direct_state *d = D(st);
    if (d->abc_check != NULL && d->instancecheck != NULL) {
        PyTypeObject *meta = Py_TYPE(d->mapping);
        int plain = unchanged(&d->seen_abc, meta);
        if (!plain) {
            PyObject *check = PyObject_GetAttr((PyObject *)meta, d->s_instancecheck);
            plain = check == d->instancecheck;
            Py_XDECREF(check);
            if (plain) {
                seen_now(&d->seen_abc, meta);
            }
        }
        /* The answer for a type stays while neither it, Mapping nor any ABC's registry
         * (abc's cache token counts registrations) changed. */
        PyObject *token = plain && d->cache_token != NULL ? PyObject_CallNoArgs(d->cache_token) : NULL;
        long long now = token == NULL ? -1 : PyLong_AsLongLong(token);
        Py_XDECREF(token);
        if (now == -1 && PyErr_Occurred()) {
            return -1;
        }
        PyTypeObject *type = Py_TYPE(obj);
        if (plain && now >= 0 && now == d->abc_token && unchanged(&d->seen_arg, type)
            && unchanged(&d->seen_mapping, (PyTypeObject *)d->mapping)) {
            return d->arg_is_mapping;
        }
        if (plain) {
            PyObject *call[2] = {d->mapping, obj};
            PyObject *answer = PyObject_Vectorcall(d->abc_check, call, 2, NULL);
            int truth = answer == NULL ? -1 : PyObject_IsTrue(answer);
            Py_XDECREF(answer);
            /* Kept only for an object whose __class__ is its type (what abc looks at). */
            PyObject *class = truth < 0 || now < 0 ? NULL : PyObject_GetAttr(obj, d->s_class);
            if (class == (PyObject *)type) {
                seen_now(&d->seen_arg, type);
                seen_now(&d->seen_mapping, (PyTypeObject *)d->mapping);
                d->arg_is_mapping = truth;
                d->abc_token = now;
            }
            Py_XDECREF(class);
            if (class == NULL && truth >= 0) {
                PyErr_Clear();
            }
            return truth;
        }
        PyErr_Clear();
    }
    return PyObject_IsInstance(obj, d->mapping);
}

/* Whether instances of the logger class `kind` get disabled, filters and name from
 * their own dict (1): generic attribute access and no data descriptor of those names
 * on the class. 0 if not, -1 on error. */
static int
logger_plain(speedups_state *st, PyTypeObject *kind)
{
    struct direct_state *d = D(st);
    if (kind->tp_getattro != PyObject_GenericGetAttr) {
        return 0;
    }
    PyObject *names[3] = {d->s_disabled, d->s_filters, d->s_name};
    for (int i = 0; i < 3; i++) {
        PyObject *found = PyObject_GetAttr((PyObject *)kind, names[i]);
        if (found == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return -1;
            }
            PyErr_Clear();
            continue;
        }
        int data = Py_TYPE(found)->tp_descr_set != NULL;
        Py_DECREF(found);
        if (data) {
            return 0;
        }
    }
    return 1;
}

/* logger.<name> (a new reference): from the instance dict for a plain logger class. */
static PyObject *
logger_attr(speedups_state *st, PyObject *logger, PyObject *name)
{
    struct direct_state *d = D(st);
    if (d->logger_plain == 1 && unchanged(&d->seen_logger, Py_TYPE(logger))) {
        PyObject *dict = PyObject_GenericGetDict(logger, NULL);
        PyObject *value = dict == NULL || !PyDict_Check(dict) ? NULL : PyDict_GetItemWithError(dict, name);
        Py_XINCREF(value);
        Py_XDECREF(dict);
        if (value != NULL) {
            return value;
        }
        PyErr_Clear();
    }
    return PyObject_GetAttr(logger, name);
}

static int
logger_attr_true(speedups_state *st, PyObject *logger, PyObject *name)
{
    PyObject *value = logger_attr(st, logger, name);
    if (value == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* Whether the short path may be taken for this logger and record (1), not (0), -1 on
 * error: the same conditions as the Python twin and _direct._record check. */
static int
direct_applies(speedups_state *st, PyObject *frame, PyObject *logger, PyObject *args,
               PyObject **layer)
{
    struct direct_state *d = D(st);
    if (!PyTuple_CheckExact(frame) || PyTuple_GET_SIZE(frame) != 4
        || !PyLong_CheckExact(PyTuple_GET_ITEM(frame, 2))) {
        return 0;
    }
    unsigned long owner = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(frame, 2));
    if (owner == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (owner != PyThread_get_thread_ident()) {
        return 0;
    }
    *layer = PyDict_GetItemWithError(d->layers, d->s_call_handlers); /* borrowed */
    if (*layer == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int ok = attr_is(*layer, d->s_slow, d->inside);
    if (ok != 1) {
        return ok;
    }
    PyObject *kind = (PyObject *)Py_TYPE(logger);
    PyObject *placed = PyDict_GetItemWithError(d->placed, d->s_call_handlers);
    if (placed == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (unchanged(&d->seen_logger, (PyTypeObject *)kind)) {
        if (d->logger_call_handlers != placed) {
            return 0;
        }
    }
    else {
        if ((ok = attr_is(kind, d->s_call_handlers, placed)) != 1
            || (ok = attr_is(kind, d->s_handle, d->handle)) != 1
            || (ok = attr_is(kind, d->s_make_record, d->make_record)) != 1) {
            return ok;
        }
        seen_now(&d->seen_logger, (PyTypeObject *)kind);
        Py_XSETREF(d->logger_call_handlers, Py_NewRef(placed));
        d->logger_plain = logger_plain(st, (PyTypeObject *)kind);
        if (d->logger_plain < 0) {
            d->seen_logger.tag = 0;
            return -1;
        }
    }
    if (!unchanged(&d->seen_record, (PyTypeObject *)d->record_type)) {
        if ((ok = attr_is(d->record_type, d->s_get_message, d->get_message)) != 1) {
            return ok;
        }
        seen_now(&d->seen_record, (PyTypeObject *)d->record_type);
    }
    if ((ok = logger_attr_true(st, logger, d->s_disabled)) != 0
        || (ok = logger_attr_true(st, logger, d->s_filters)) != 0) {
        return ok < 0 ? -1 : 0;
    }
    PyObject *factory = PyDict_GetItemWithError(d->logging_dict, d->s_factory);
    if (factory != d->record_type) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if ((ok = logging_switch(st, d->s_log_threads, 0)) != 1
        || (ok = logging_switch(st, d->s_log_processes, 0)) != 1
        || (ok = logging_switch(st, d->s_log_multiprocessing, 0)) != 1) {
        return ok;
    }
    if (PyTuple_GET_SIZE(args) == 1) { /* LogRecord takes one mapping argument as the args */
        PyObject *only = PyTuple_GET_ITEM(args, 0);
        if (!PyUnicode_CheckExact(only) && !PyLong_CheckExact(only) && !PyFloat_CheckExact(only)) {
            int mapped = is_mapping(st, only);
            if (mapped != 0) {
                return mapped < 0 ? -1 : 0;
            }
        }
    }
    return 1;
}

/* -- the record, made when first asked for --------------------------------------------
 *
 * A record made from a template needs, besides the template, what LogRecord.__init__
 * reads at that moment: the clock, the thread's, level's, process's and task's names.
 * These are taken at capture into a PendingRecord, which the event holds as its
 * `original` until something reads the field: the Event type's `original` is then a
 * descriptor (OriginalSlot) over the same slot that makes the record from them, keeps
 * it in the slot and hands it out, the same object on every read. Nothing that could
 * change between capture and that read goes into the record later. */

typedef struct {
    PyObject_HEAD
    PyObject *template;     /* the template's values, never changed */
    PyObject *created;      /* float */
    double msecs;
    double relative;
    PyObject *args;
    PyObject *thread_name;
    PyObject *levelname;
    PyObject *process_name;
    PyObject *task_name;    /* NULL when the template has no taskName (Python 3.11) */
    PyObject *extra;        /* a copy of the caller's, or NULL */
    struct template_view view; /* borrowed from template */
} Pending;

static int
pending_traverse(Pending *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->template);
    Py_VISIT(self->created);
    Py_VISIT(self->args);
    Py_VISIT(self->thread_name);
    Py_VISIT(self->levelname);
    Py_VISIT(self->process_name);
    Py_VISIT(self->task_name);
    Py_VISIT(self->extra);
    return 0;
}

static int
pending_clear(Pending *self)
{
    Py_CLEAR(self->template);
    Py_CLEAR(self->created);
    Py_CLEAR(self->args);
    Py_CLEAR(self->thread_name);
    Py_CLEAR(self->levelname);
    Py_CLEAR(self->process_name);
    Py_CLEAR(self->task_name);
    Py_CLEAR(self->extra);
    return 0;
}

static void
pending_dealloc(Pending *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    pending_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyType_Slot pending_slots[] = {
    {Py_tp_doc, "What a log record made from a template needs, taken at capture."},
    {Py_tp_traverse, pending_traverse},
    {Py_tp_clear, pending_clear},
    {Py_tp_dealloc, pending_dealloc},
    {0, NULL},
};

static PyType_Spec pending_spec = {
    .name = "errpolicy._speedups.PendingRecord",
    .basicsize = sizeof(Pending),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = pending_slots,
};

/* The record's times, as LogRecord.__init__ sets them, into `pending`. */
static int
take_times(speedups_state *st, Pending *pending)
{
    struct direct_state *d = D(st);
    PyObject *start = PyDict_GetItemWithError(d->logging_dict, d->s_start_time);
    if (start == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "logging has no _startTime");
        }
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    /* Python 3.13+: from time.time_ns() (LogRecord.__init__'s arithmetic, in C). */
    PyObject *clock = direct_global(st, d->s_time);
    PyObject *now = clock == NULL ? NULL : PyObject_CallNoArgs(clock);
    if (now == NULL) {
        return -1;
    }
    long long ns = PyLong_AsLongLong(now);
    double seconds = ns == -1 && PyErr_Occurred() ? -1.0 : PyLong_AsDouble(now);
    PyObject *since = PyErr_Occurred() ? NULL : PyNumber_Subtract(now, start);
    Py_DECREF(now);
    if (since == NULL) {
        return -1;
    }
    double relative = PyLong_Check(since) ? PyLong_AsDouble(since) : PyFloat_AsDouble(since);
    Py_DECREF(since);
    if (relative == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    double created = seconds / 1e9;
    long long within = ns % 1000000000LL, whole = ns / 1000000000LL;
    if (within < 0) { /* Python's floor division and modulo */
        within += 1000000000LL;
        whole -= 1;
    }
    double msecs = (double)(within / 1000000LL) + 0.0;
    if (msecs == 999.0 && (long long)created != whole) {
        msecs = 0.0;
    }
    pending->created = PyFloat_FromDouble(created);
    pending->msecs = msecs;
    pending->relative = relative / 1e6;
    return pending->created == NULL ? -1 : 0;
#else
    /* Python 3.11 and 3.12: from time.time(). */
    PyObject *clock = direct_global(st, d->s_time);
    PyObject *c = clock == NULL ? NULL : PyObject_CallNoArgs(clock);
    if (c == NULL) {
        return -1;
    }
    pending->created = c;
    double now = PyFloat_AsDouble(c);
    double began = PyFloat_AsDouble(start);
    if (PyErr_Occurred()) {
        return -1;
    }
    pending->msecs = (double)(long long)((now - (double)(long long)now) * 1000) + 0.0;
    pending->relative = (now - began) * 1000;
    return 0;
#endif
}

/* `value` if true, else `otherwise` (a new reference; NULL on error). */
static PyObject *
or_else(PyObject *value, PyObject *otherwise)
{
    int truth = value == NULL ? 0 : PyObject_IsTrue(value);
    if (truth < 0) {
        return NULL;
    }
    return Py_NewRef(truth ? value : otherwise);
}

/* A no-argument function of errpolicy._direct, called. */
static PyObject *
call_direct(speedups_state *st, PyObject *name)
{
    PyObject *function = direct_global(st, name);
    return function == NULL ? NULL : PyObject_CallNoArgs(function);
}

/* thread.name: the Thread's _name while its name property is threading's own. */
static PyObject *
thread_name(speedups_state *st, PyObject *thread)
{
    struct direct_state *d = D(st);
    PyTypeObject *type = Py_TYPE(thread);
    PyObject *name = NULL;
    if (d->thread_name != NULL) {
        int plain = unchanged(&d->seen_thread, type);
        if (!plain) {
            PyObject *descr = PyObject_GetAttr((PyObject *)type, d->s_name);
            plain = descr == d->thread_name;
            Py_XDECREF(descr);
            if (plain) {
                seen_now(&d->seen_thread, type);
            }
        }
        PyObject *dict = plain ? PyObject_GenericGetDict(thread, NULL) : NULL;
        if (dict != NULL && PyDict_Check(dict)) {
            name = PyDict_GetItemWithError(dict, d->s_private_name);
            Py_XINCREF(name);
        }
        Py_XDECREF(dict);
        if (name != NULL) {
            return name;
        }
        PyErr_Clear();
    }
    return PyObject_GetAttr(thread, d->s_name);
}

/* LogRecord's levelname: logging.getLevelName(level), its steps in C while it is the
 * stdlib's own. */
static PyObject *
level_name(speedups_state *st, PyObject *level)
{
    struct direct_state *d = D(st);
    PyObject *namer = PyDict_GetItemWithError(d->logging_dict, d->s_getlevelname);
    if (namer == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "logging has no getLevelName");
        }
        return NULL;
    }
    if (namer != d->get_level_name) { /* LogRecord calls it by name: a patched one is used */
        return PyObject_CallOneArg(namer, level);
    }
    PyObject *known = PyDict_GetItemWithError(d->level_names, level);
    if (known != NULL && known != Py_None) {
        return Py_NewRef(known);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *names = PyDict_GetItemWithError(d->logging_dict, d->s_name_to_level);
    PyObject *named = names == NULL || !PyDict_Check(names) ? NULL : PyDict_GetItemWithError(names, level);
    if (named != NULL && named != Py_None) {
        return Py_NewRef(named);
    }
    if (names == NULL || !PyDict_Check(names) || PyErr_Occurred()) {
        return PyErr_Occurred() ? NULL : PyObject_CallOneArg(namer, level);
    }
    if (d->unnamed == NULL && (d->unnamed = PyDict_New()) == NULL) {
        return NULL;
    }
    PyObject *made = PyDict_GetItemWithError(d->unnamed, level);
    if (made != NULL || PyErr_Occurred()) {
        return Py_XNewRef(made);
    }
    made = PyUnicode_FromFormat("Level %S", level);
    if (made != NULL && PyDict_GET_SIZE(d->unnamed) < 64 && PyDict_SetItem(d->unnamed, level, made) < 0) {
        Py_CLEAR(made);
    }
    return made;
}

/* A PendingRecord for this call: everything LogRecord.__init__ reads now. */
static Pending *
take_pending(speedups_state *st, PyObject *template, struct template_view *view,
             PyObject *level, PyObject *args, PyObject *thread, PyObject *extra)
{
    struct direct_state *d = D(st);
    Pending *pending = PyObject_GC_New(Pending, st->pending_type);
    if (pending == NULL) {
        return NULL;
    }
    pending->template = Py_NewRef(template);
    pending->view = *view; /* borrowed from the template it holds */
    pending->created = pending->thread_name = pending->levelname = NULL;
    pending->process_name = pending->task_name = pending->extra = NULL;
    pending->args = Py_NewRef(args);
    PyObject_GC_Track(pending);
    if (take_times(st, pending) < 0 || (pending->thread_name = thread_name(st, thread)) == NULL
        || (pending->levelname = level_name(st, level)) == NULL) {
        goto failed;
    }
    int multi = PyDict_Contains(d->modules, d->s_multiprocessing);
    pending->process_name = multi < 0  ? NULL
                            : multi ? call_direct(st, d->s_py_process_name)
                                    : Py_NewRef(d->main_process);
    if (pending->process_name == NULL) {
        goto failed;
    }
    if (view->has_task) { /* Python 3.12+ */
        int asyncio = PyDict_Contains(d->modules, d->s_asyncio);
        pending->task_name = asyncio < 0 ? NULL
                             : asyncio   ? call_direct(st, d->s_task_of_record)
                                         : Py_NewRef(Py_None);
        if (pending->task_name == NULL) {
            goto failed;
        }
    }
    /* The caller may change its dict once the call returns; the record must not. */
    if (extra != Py_None && (pending->extra = PyDict_Copy(extra)) == NULL) {
        goto failed;
    }
    return pending;
failed:
    Py_DECREF(pending);
    return NULL;
}

/* The record `pending` stands for: the template's values, then the ones taken at
 * capture, set as LogRecord.__init__ sets them. */
static PyObject *
make_record(speedups_state *st, Pending *pending)
{
    struct direct_state *d = D(st);
    PyObject *values = PyDict_Copy(pending->template);
    if (values == NULL) {
        return NULL;
    }
    PyObject *msecs = PyFloat_FromDouble(pending->msecs);
    PyObject *relative = PyFloat_FromDouble(pending->relative);
    PyObject *record = NULL;
    if (msecs == NULL || relative == NULL
        || PyDict_SetItem(values, d->s_created, pending->created) < 0
        || PyDict_SetItem(values, d->s_msecs, msecs) < 0
        || PyDict_SetItem(values, d->s_relative, relative) < 0
        || PyDict_SetItem(values, d->s_args, pending->args) < 0
        || PyDict_SetItem(values, d->s_thread_name, pending->thread_name) < 0
        || PyDict_SetItem(values, d->s_levelname, pending->levelname) < 0
        || PyDict_SetItem(values, d->s_process_name, pending->process_name) < 0
        || (pending->task_name != NULL
            && PyDict_SetItem(values, d->s_task_name, pending->task_name) < 0)
        || (pending->extra != NULL && PyDict_Update(values, pending->extra) < 0)) {
        goto done;
    }
    record = PyBaseObject_Type.tp_new((PyTypeObject *)d->record_type, d->empty, NULL);
    if (record != NULL && PyObject_SetAttr(record, d->s_dict, values) < 0) {
        Py_CLEAR(record);
    }
done:
    Py_XDECREF(msecs);
    Py_XDECREF(relative);
    Py_DECREF(values);
    return record;
}

/* -- OriginalSlot: Event.original, making a pending record on first read ------------ */

typedef struct {
    PyObject_HEAD
    PyObject *name;        /* "original" */
    PyTypeObject *owner;   /* errpolicy.Event */
    Py_ssize_t offset;     /* the slot's, as the member descriptor it replaces had it */
} OriginalSlot;

static int
slot_traverse(OriginalSlot *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->name);
    Py_VISIT(self->owner);
    return 0;
}

static int
slot_clear(OriginalSlot *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->owner);
    return 0;
}

static void
slot_dealloc(OriginalSlot *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    slot_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject **
slot_of(OriginalSlot *self, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, self->owner)) {
        PyErr_Format(PyExc_TypeError, "descriptor '%U' for '%s' objects doesn't apply to a '%s' object",
                     self->name, self->owner->tp_name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (PyObject **)((char *)obj + self->offset);
}

static PyObject *
slot_get(PyObject *self, PyObject *obj, PyObject *type)
{
    OriginalSlot *slot = (OriginalSlot *)self;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    PyObject **where = slot_of(slot, obj);
    if (where == NULL) {
        return NULL;
    }
    PyObject *value = *where;
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%U'",
                     Py_TYPE(obj)->tp_name, slot->name);
        return NULL;
    }
    speedups_state *st = state_of_class(Py_TYPE(self));
    if (Py_TYPE(value) != st->pending_type) {
        return Py_NewRef(value);
    }
    PyObject *record = make_record(st, (Pending *)value);
    if (record == NULL) {
        return NULL;
    }
    if (*where == value) { /* made from it: kept, so every read hands out this one */
        Py_SETREF(*where, Py_NewRef(record));
    }
    return record;
}

static int
slot_set(PyObject *self, PyObject *obj, PyObject *value)
{
    OriginalSlot *slot = (OriginalSlot *)self;
    PyObject **where = slot_of(slot, obj);
    if (where == NULL) {
        return -1;
    }
    if (value == NULL && *where == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%U'",
                     Py_TYPE(obj)->tp_name, slot->name);
        return -1;
    }
    Py_XSETREF(*where, Py_XNewRef(value));
    return 0;
}

static PyMemberDef slot_members[] = {
    {"__name__", T_OBJECT, offsetof(OriginalSlot, name), READONLY},
    {"__objclass__", T_OBJECT, offsetof(OriginalSlot, owner), READONLY},
    {NULL},
};

static PyType_Slot original_slots[] = {
    {Py_tp_doc, "Event.original: the slot, a log record made when first read."},
    {Py_tp_traverse, slot_traverse},
    {Py_tp_clear, slot_clear},
    {Py_tp_dealloc, slot_dealloc},
    {Py_tp_descr_get, slot_get},
    {Py_tp_descr_set, slot_set},
    {Py_tp_members, slot_members},
    {0, NULL},
};

static PyType_Spec original_spec = {
    .name = "errpolicy._speedups.OriginalSlot",
    .basicsize = sizeof(OriginalSlot),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = original_slots,
};

/* lazy_original(Event): Event.original becomes an OriginalSlot over the same slot. */
static PyObject *
lazy_original(PyObject *module, PyObject *type)
{
    speedups_state *st = state_of_module(module);
    if (!PyType_Check(type) || (PyTypeObject *)type != st->event_type) {
        PyErr_SetString(PyExc_TypeError, "lazy_original() takes the Event type setup_event() had");
        return NULL;
    }
    PyObject *name = PyUnicode_InternFromString("original");
    if (name == NULL) {
        return NULL;
    }
    PyObject *descr = PyDict_GetItemWithError(((PyTypeObject *)type)->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "lazy_original(): Event.original is not a slot");
        }
        Py_DECREF(name);
        return NULL;
    }
    OriginalSlot *slot = PyObject_GC_New(OriginalSlot, st->original_type);
    if (slot == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    slot->name = name;
    slot->owner = (PyTypeObject *)Py_NewRef(type);
    slot->offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    PyObject_GC_Track(slot);
    int failed = PyObject_SetAttr(type, name, (PyObject *)slot);
    Py_DECREF(slot);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Whether `extra`'s keys are `keys`, in order (None for no extra). */
static int
same_keys(PyObject *extra, PyObject *keys)
{
    if (extra == Py_None || keys == Py_None) {
        return extra == keys;
    }
    if (keys == NULL || PyDict_GET_SIZE(extra) != PyTuple_GET_SIZE(keys)) {
        return 0;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(extra, &pos, &key, &value)) {
        if (PyTuple_GET_ITEM(keys, i++) != key) {
            return 0;
        }
    }
    return 1;
}

/* The view of `template` an event needs: 0, or -1 if one is missing (an error set). */
static int
view_of(speedups_state *st, PyObject *template, struct template_view *view)
{
    struct direct_state *d = D(st);
    PyObject *lineno = PyDict_GetItemWithError(template, d->s_lineno_attr);
    PyObject *thread = PyDict_GetItemWithError(template, d->s_thread);
    view->name = PyDict_GetItemWithError(template, d->s_name);
    view->levelno = PyDict_GetItemWithError(template, d->s_levelno);
    view->pathname = PyDict_GetItemWithError(template, d->s_pathname);
    view->has_task = PyDict_Contains(template, d->s_task_name);
    if (lineno == NULL || thread == NULL || view->name == NULL || view->levelno == NULL
        || view->pathname == NULL || view->has_task < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "a record template without its fields");
        }
        return -1;
    }
    int truth = PyObject_IsTrue(lineno);
    if (truth < 0) {
        return -1;
    }
    view->lineno = truth ? lineno : d->zero;
    truth = PyObject_IsTrue(thread);
    if (truth < 0) {
        return -1;
    }
    view->thread = truth ? thread : d->zero;
    return 0;
}

/* The template _direct._record keeps for this call, borrowed; NULL without error if
 * there is none yet (the Python twin makes it). The last one found is kept with its
 * key's parts, compared by identity. */
static PyObject *
find_template(speedups_state *st, PyObject *logger, PyObject *level, PyObject *pathname,
              PyObject *lineno, PyObject *msg, PyObject *extra, PyObject *ident,
              struct template_view *view)
{
    struct direct_state *d = D(st);
    PyObject *name = logger_attr(st, logger, d->s_name);
    if (name == NULL) {
        return NULL;
    }
    unsigned long thread = PyLong_AsUnsignedLong(ident);
    long pid = (long)getpid();
    if (d->last_template != NULL && logger == d->last_logger && name == d->last_name
        && level == d->last_level && pathname == d->last_pathname && lineno == d->last_lineno
        && msg == d->last_msg && thread == d->last_ident && pid == d->last_pid
        && same_keys(extra, d->last_keys)) {
        Py_DECREF(name);
        *view = d->last_view;
        return d->last_template;
    }
    PyObject *templates = direct_global(st, d->s_templates);
    PyObject *keys = templates == NULL || !PyDict_Check(templates) ? NULL
                     : extra == Py_None ? Py_NewRef(Py_None)
                                        : PyTuple_New(PyDict_GET_SIZE(extra));
    if (keys != NULL && keys != Py_None) { /* tuple(extra): its keys in order */
        Py_ssize_t pos = 0, i = 0;
        PyObject *key, *value;
        while (PyDict_Next(extra, &pos, &key, &value)) {
            PyTuple_SET_ITEM(keys, i++, Py_NewRef(key));
        }
    }
    PyObject *py_pid = keys == NULL ? NULL : PyLong_FromLong(pid);
    PyObject *key = py_pid == NULL
                        ? NULL
                        : PyTuple_Pack(8, name, level, pathname, lineno, msg, keys, ident, py_pid);
    Py_XDECREF(py_pid);
    PyObject *template = key == NULL ? NULL : PyDict_GetItemWithError(templates, key);
    Py_XDECREF(key);
    if (template != NULL && PyDict_Check(template) && view_of(st, template, view) == 0) {
        /* Forgotten first: a decref below could run code that calls here again. */
        Py_CLEAR(d->last_template);
        d->last_view = *view;
        Py_XSETREF(d->last_logger, Py_NewRef(logger));
        Py_XSETREF(d->last_name, Py_NewRef(name));
        Py_XSETREF(d->last_level, Py_NewRef(level));
        Py_XSETREF(d->last_pathname, Py_NewRef(pathname));
        Py_XSETREF(d->last_lineno, Py_NewRef(lineno));
        Py_XSETREF(d->last_msg, Py_NewRef(msg));
        Py_XSETREF(d->last_keys, Py_NewRef(keys));
        Py_XSETREF(d->last_template, Py_NewRef(template));
        d->last_ident = thread;
        d->last_pid = pid;
    }
    else {
        template = NULL;
    }
    Py_DECREF(name);
    Py_XDECREF(keys);
    return template;
}

/* The draft event, as the Python twin builds it from the record: its fields from the
 * template and from what `pending` took, its original `pending` itself. */
static PyObject *
direct_event(speedups_state *st, Pending *pending, PyObject *severity, PyObject *message)
{
    struct direct_state *d = D(st);
    /* getattr(record, "taskName", None): the extra's (Python 3.11) or the one taken */
    PyObject *task = pending->extra == NULL ? NULL
                                            : PyDict_GetItemWithError(pending->extra, d->s_task_name);
    if (task == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (task == NULL) {
        task = pending->task_name;
    }
    int named = task == NULL ? 0 : PyObject_IsTrue(task);
    if (named < 0) {
        return NULL;
    }
    if (named) {
        task = Py_NewRef(task);
    }
    else {
        int asyncio = PyDict_Contains(d->modules, d->s_asyncio);
        task = asyncio < 0 ? NULL : asyncio ? call_direct(st, d->s_py_task_name) : Py_NewRef(Py_None);
        if (task == NULL) {
            return NULL;
        }
    }
    PyObject *event = NULL;
    struct template_view *view = &pending->view;
    PyObject *thread_name = or_else(pending->thread_name, d->blank);
    if (thread_name != NULL && event_ready(st)) {
        PyObject *fields[EVENT_REQUIRED] = {d->source, severity, Py_None, message, Py_None,
                                            view->name, view->levelno, view->pathname,
                                            view->lineno, pending->created, thread_name,
                                            view->thread, task, (PyObject *)pending};
        event = st->event_type->tp_alloc(st->event_type, 0);
        if (event != NULL && fill(st, event, fields, EVENT_REQUIRED) < 0) {
            Py_CLEAR(event);
        }
    }
    Py_DECREF(task);
    Py_XDECREF(thread_name);
    return event;
}

/* 1 if the logger() matcher `scope` takes an event of logger `name`, 0 if not, -1 to
 * ask it (not that matcher, or not plain strings): match._Logger.__call__'s rule. */
static int
matcher_says(speedups_state *st, PyObject *scope, PyObject *name)
{
    struct direct_state *d = D(st);
    if (d->matcher == NULL || (PyObject *)Py_TYPE(scope) != d->matcher || !PyUnicode_CheckExact(name)) {
        return -1;
    }
    if (!unchanged(&d->seen_matcher, (PyTypeObject *)d->matcher)) {
        PyObject *call = PyObject_GetAttr(d->matcher, d->s_dunder_call);
        int plain = call == d->matcher_call;
        Py_XDECREF(call);
        PyErr_Clear();
        if (!plain) {
            return -1;
        }
        seen_now(&d->seen_matcher, (PyTypeObject *)d->matcher);
    }
    PyObject *prefixes = PyObject_GetAttr(scope, d->s_prefixes);
    if (prefixes == NULL) {
        PyErr_Clear();
        return -1;
    }
    int answer = PyTuple_CheckExact(prefixes) ? 0 : -1;
    Py_ssize_t length = PyUnicode_GET_LENGTH(name);
    for (Py_ssize_t i = 0; answer == 0 && i < PyTuple_GET_SIZE(prefixes); i++) {
        PyObject *prefix = PyTuple_GET_ITEM(prefixes, i);
        if (!PyUnicode_CheckExact(prefix)) {
            answer = -1;
            break;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(prefix);
        if (n == length) {
            answer = PyUnicode_Compare(name, prefix) == 0;
        }
        else if (n < length && PyUnicode_READ_CHAR(name, n) == '.') {
            answer = PyUnicode_Tailmatch(name, prefix, 0, n, -1) == 1;
        }
    }
    Py_DECREF(prefixes);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return answer;
}

/* Whether errpolicy.Report has ReportCore's takes and capture (checked once per
 * version of the class). */
static int
report_plain(speedups_state *st)
{
    struct direct_state *d = D(st);
    PyTypeObject *type = st->report_type;
    if (unchanged(&d->seen_report, type)) {
        return 1;
    }
    PyObject *takes = PyObject_GetAttr((PyObject *)type, d->s_takes);
    PyObject *capture = PyObject_GetAttr((PyObject *)type, d->s_capture);
    PyObject *own_takes = PyDict_GetItemWithError(st->report_core->tp_dict, d->s_takes);
    PyObject *own_capture = PyDict_GetItemWithError(st->report_core->tp_dict, d->s_capture);
    int plain = takes != NULL && takes == own_takes && capture != NULL && capture == own_capture;
    Py_XDECREF(takes);
    Py_XDECREF(capture);
    PyErr_Clear();
    if (plain) {
        seen_now(&d->seen_report, type);
    }
    return plain;
}

/* report.takes(draft), answered here for an errpolicy.Report whose policy's scope is
 * None or the logger() matcher: 1, 0, -1 on error. */
static int
takes(speedups_state *st, PyObject *report, PyObject *draft, PyObject *name)
{
    struct direct_state *d = D(st);
    PyTypeObject *type = Py_TYPE(report);
    if (type == st->report_type && report_plain(st)) {
        ReportCore *core = (ReportCore *)report;
        if (!core->open) {
            return 0;
        }
        if (core->policy != NULL) {
            PyObject *scope = PyObject_GetAttr(core->policy, st->str_scope);
            if (scope == NULL) {
                return -1;
            }
            int answer = scope == Py_None ? 1 : matcher_says(st, scope, name);
            Py_DECREF(scope);
            if (answer >= 0) {
                return answer;
            }
        }
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *call[2] = {report, draft};
    PyObject *answer =
        PyObject_VectorcallMethod(d->s_takes, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    int truth = answer == NULL ? -1 : PyObject_IsTrue(answer);
    Py_XDECREF(answer);
    return truth;
}

/* Offer `draft` (of logger `name`) to the guards from `frame` outwards: 1 taken, 0 not,
 * -1 error. */
static int
route_draft(speedups_state *st, PyObject *frame, PyObject *draft, PyObject *name)
{
    struct direct_state *d = D(st);
    PyObject *here = frame;
    while (here != Py_None) {
        if (!PyTuple_Check(here) || PyTuple_GET_SIZE(here) < 2) {
            PyErr_SetString(PyExc_TypeError, "a guard frame must be a tuple");
            return -1;
        }
        PyObject *report = PyTuple_GET_ITEM(here, 0);
        int truth = takes(st, report, draft, name);
        if (truth < 0) {
            return -1;
        }
        if (truth) {
            PyObject *done;
            if (Py_TYPE(report) == st->report_type && report_plain(st)) {
                done = report_capture((ReportCore *)report, st->report_core, &draft, 1, NULL);
            }
            else {
                PyObject *call[2] = {report, draft};
                done = PyErr_Occurred() ? NULL
                                        : PyObject_VectorcallMethod(
                                              d->s_capture, call,
                                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            }
            if (done == NULL) {
                return -1;
            }
            Py_DECREF(done);
            return 1;
        }
        here = PyTuple_GET_ITEM(here, 1);
    }
    return 0;
}

/* The record of this call: the draft's original (made now if it was not read yet, and
 * kept there), or made from `pending` when no draft was made. */
static PyObject *
record_of(speedups_state *st, PyObject *draft, Pending *pending)
{
    if (draft == NULL || !event_ready(st)) {
        PyErr_Clear();
        return make_record(st, pending);
    }
    PyObject *original = EVENT_SLOT(st, draft, EVENT_ORIGINAL); /* original */
    if (original != NULL && Py_TYPE(original) != st->pending_type) {
        return Py_NewRef(original);
    }
    PyObject *record = make_record(st, pending);
    if (record != NULL && original == (PyObject *)pending) {
        Py_XSETREF(EVENT_SLOT(st, draft, EVENT_ORIGINAL), Py_NewRef(record));
    }
    return record;
}

/* The message, the event and the guards: 1 taken, 0 not taken (or failed: the record
 * goes on as without errpolicy), -1 to raise (a guard's own PolicyViolation). The
 * draft, if one was made, in *draft. */
static int
offer(speedups_state *st, PyObject *frame, PyObject *msg, PyObject *args, Pending *pending,
      PyObject *severity, PyObject **draft)
{
    struct direct_state *d = D(st);
    PyObject *message =
        PyTuple_GET_SIZE(args) ? PyUnicode_Format(msg, args) : Py_NewRef(msg);
    if (message == NULL
        && (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError))) {
        PyErr_Clear(); /* bad %-args: the raw message, as record_event keeps */
        message = Py_NewRef(msg);
    }
    int taken = -1;
    if (message != NULL) {
        *draft = direct_event(st, pending, severity, message);
        Py_DECREF(message);
        if (*draft != NULL) {
            taken = route_draft(st, frame, *draft, pending->view.name);
        }
    }
    if (taken >= 0) {
        return taken;
    }
    if (PyErr_ExceptionMatches(d->violation)) { /* the guard's own, in immediate mode */
        if (PyList_Check(d->kept) && PyList_GET_SIZE(d->kept) > 0) {
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyObject *record = record_of(st, *draft, pending);
            PyObject *done = record == NULL ? NULL : PyObject_CallOneArg(d->announce, record);
            Py_XDECREF(record);
            Py_XDECREF(done);
            PyErr_Clear(); /* a broken listener must not replace the violation */
            PyErr_Restore(type, value, traceback);
        }
        return -1;
    }
    if (PyErr_ExceptionMatches(PyExc_Exception)) { /* never into the caller */
        PyErr_Clear();
        return 0;
    }
    return -1;
}

static PyObject *
log_direct(PyObject *module, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    speedups_state *st = state_of_module(module);
    struct direct_state *d = D(st);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (d->python == NULL || not_set_up(st)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "errpolicy._speedups.setup_direct() was not called");
        }
        return NULL;
    }
    PyObject *pathname = NULL, *lineno = d->zero, *extra = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
        if (kw == d->s_pathname) {
            pathname = args[nargs + k];
        }
        else if (kw == d->s_lineno) {
            lineno = args[nargs + k];
        }
        else if (kw == d->s_extra) {
            extra = args[nargs + k];
        }
        else {
            goto python; /* not interned, or not ours: the Python twin binds (or refuses) */
        }
    }
    if (nargs != 4 || pathname == NULL) {
        goto python;
    }
    PyObject *logger = args[0], *level = args[1], *msg = args[2], *largs = args[3];
    if (!PyUnicode_CheckExact(msg) || !PyLong_CheckExact(level) || !PyTuple_CheckExact(largs)
        || (extra != Py_None && !PyDict_CheckExact(extra))) {
        goto python;
    }
    PyObject *frame = NULL;
    if (PyContextVar_Get(st->active, Py_None, &frame) < 0) {
        return NULL;
    }
    if (frame == Py_None || frame == hidden_frame(st)) {
        Py_DECREF(frame);
        goto python;
    }
    PyObject *layer = NULL;
    int applies = direct_applies(st, frame, logger, largs, &layer);
    PyObject *template = NULL, *severity = NULL, *thread = NULL;
    struct template_view view;
    if (applies == 1) {
        PyObject *ident = PyTuple_GET_ITEM(frame, 2);
        template = find_template(st, logger, level, pathname, lineno, msg, extra, ident, &view);
        severity = template == NULL ? NULL : PyDict_GetItemWithError(d->severities, level);
        thread = severity == NULL ? NULL : PyDict_GetItemWithError(d->threads, ident);
        if (thread == NULL) {
            applies = PyErr_Occurred() ? -1 : 0;
        }
    }
    if (applies != 1) {
        Py_DECREF(frame);
        if (applies < 0) {
            return NULL;
        }
        goto python;
    }
    /* Held across what may run other code (a collection's finalizers, the caller's
     * __str__), which could drop them from _layers and from the remembered template. */
    Py_INCREF(layer);
    Py_INCREF(template);
    PyObject *result = NULL, *draft = NULL, *record = NULL;
    Pending *pending = take_pending(st, template, &view, level, largs, thread, extra);
    if (pending == NULL) {
        goto done;
    }
    int taken = offer(st, frame, msg, largs, pending, severity, &draft);
    if (taken < 0) {
        goto done;
    }
    if (taken && !(PyList_Check(d->kept) && PyList_GET_SIZE(d->kept) > 0)) {
        result = Py_NewRef(Py_None); /* nobody asked for the record: not made */
        goto done;
    }
    record = record_of(st, draft, pending);
    if (record == NULL) {
        goto done;
    }
    PyObject *call[4] = {logger, record, layer, taken ? Py_True : Py_False};
    result = PyObject_Vectorcall(d->after, call, 4, NULL);
done:
    Py_DECREF(frame);
    Py_DECREF(layer);
    Py_DECREF(template);
    Py_XDECREF(pending);
    Py_XDECREF(draft);
    Py_XDECREF(record);
    return result;
python:
    return PyObject_Vectorcall(d->python, args, nargsf, kwnames);
}

/* setup_direct(**what): what log_direct reads; see struct direct_state. */
static PyObject *
setup_direct(PyObject *module, PyObject *args, PyObject *kwargs)
{
    speedups_state *st = state_of_module(module);
    struct direct_state *d = D(st);
    static char *keywords[] = {"python",      "after",      "direct_module", "logging_module",
                               "layers",      "placed",     "inside",        "handle",
                               "make_record", "record_type", "get_message",  "mapping",
                               "threads",     "level_names", "modules",      "severities",
                               "kept",        "announce",   "violation",     "matcher",
                               "instancecheck", "abc_check", "get_level_name", "thread_name",
                               "cache_token", NULL};
    PyObject *a[25];
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "$OOOOO!O!OOOOOOO!O!O!O!O!OOO!OOOOO:setup_direct", keywords, &a[0], &a[1],
            &a[2], &a[3], &PyDict_Type, &a[4], &PyDict_Type, &a[5], &a[6], &a[7], &a[8], &a[9],
            &a[10], &a[11], &PyDict_Type, &a[12], &PyDict_Type, &a[13], &PyDict_Type, &a[14],
            &PyDict_Type, &a[15], &PyList_Type, &a[16], &a[17], &a[18], &PyType_Type,
            &a[19], &a[20], &a[21], &a[22], &a[23], &a[24])) {
        return NULL;
    }
    if (!PyType_Check(a[9]) || !PyType_Check(a[18])) {
        PyErr_SetString(PyExc_TypeError, "setup_direct(): record_type and violation are types");
        return NULL;
    }
    PyObject *direct_dict = module_dict_of(a[2], "direct_module");
    if (direct_dict == NULL) {
        return NULL;
    }
    PyObject *logging_dict = module_dict_of(a[3], "logging_module");
    if (logging_dict == NULL) {
        Py_DECREF(direct_dict);
        return NULL;
    }
    Py_XSETREF(d->python, Py_NewRef(a[0]));
    Py_XSETREF(d->after, Py_NewRef(a[1]));
    Py_XSETREF(d->direct_dict, direct_dict);
    Py_XSETREF(d->logging_dict, logging_dict);
    Py_XSETREF(d->layers, Py_NewRef(a[4]));
    Py_XSETREF(d->placed, Py_NewRef(a[5]));
    Py_XSETREF(d->inside, Py_NewRef(a[6]));
    Py_XSETREF(d->handle, Py_NewRef(a[7]));
    Py_XSETREF(d->make_record, Py_NewRef(a[8]));
    Py_XSETREF(d->record_type, Py_NewRef(a[9]));
    Py_XSETREF(d->get_message, Py_NewRef(a[10]));
    Py_XSETREF(d->mapping, Py_NewRef(a[11]));
    Py_XSETREF(d->threads, Py_NewRef(a[12]));
    Py_XSETREF(d->level_names, Py_NewRef(a[13]));
    Py_XSETREF(d->modules, Py_NewRef(a[14]));
    Py_XSETREF(d->severities, Py_NewRef(a[15]));
    Py_XSETREF(d->kept, Py_NewRef(a[16]));
    Py_XSETREF(d->announce, Py_NewRef(a[17]));
    Py_XSETREF(d->violation, Py_NewRef(a[18]));
    PyObject *call = PyDict_GetItemWithError(((PyTypeObject *)a[19])->tp_dict, d->s_dunder_call);
    if (call == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "setup_direct(): the matcher has no __call__");
        }
        return NULL;
    }
    Py_XSETREF(d->matcher_call, Py_NewRef(call));
    Py_XSETREF(d->matcher, Py_NewRef(a[19]));
    Py_XSETREF(d->instancecheck, Py_NewRef(a[20]));
    Py_XSETREF(d->abc_check, Py_NewRef(a[21]));
    Py_XSETREF(d->get_level_name, Py_NewRef(a[22]));
    Py_XSETREF(d->thread_name, Py_NewRef(a[23]));
    Py_XSETREF(d->cache_token, Py_NewRef(a[24]));
    d->seen_logger.tag = 0; /* what was remembered was checked against the old values */
    Py_RETURN_NONE;
}

/* set_null_sink(NullSink): a guard that recorded events, closing with no exception and
 * nothing raised, skips finish() when its sink is one: finish would do nothing. */
static PyObject *
set_null_sink(PyObject *module, PyObject *type)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "set_null_sink() takes a type");
        return NULL;
    }
    Py_XSETREF(D(state_of_module(module))->null_sink, Py_NewRef(type));
    Py_RETURN_NONE;
}

/* 1 when finish(report, exc) would do nothing at all: no exception, nothing raised,
 * and the report's configured sink a NullSink. */
static int
finish_is_idle(speedups_state *st, ReportCore *report, PyObject *exc)
{
    PyObject *null_sink = D(st)->null_sink;
    if (null_sink == NULL || exc != Py_None || report->config == NULL
        || (report->raised != NULL && report->raised != Py_None
            && !(PyList_Check(report->raised) && PyList_GET_SIZE(report->raised) == 0))) {
        return 0;
    }
    PyObject *sink = PyObject_GetAttr(report->config, D(st)->s_sink);
    if (sink == NULL) {
        PyErr_Clear(); /* finish() says what is wrong */
        return 0;
    }
    int idle = (PyObject *)Py_TYPE(sink) == null_sink;
    Py_DECREF(sink);
    return idle;
}

static PyObject *
setup(PyObject *module, PyObject *args, PyObject *kwargs)
{
    speedups_state *st = state_of_module(module);
    static char *keywords[] = {"active",        "warnings_module", "front_filter",
                               "ensure_ready",  "config_module",   "report_type",
                               "resolve",       "finish",          "shared_guards",
                               "make_guard",    "policy_type",     "hidden",
                               NULL};
    PyObject *a_active, *a_warnings, *a_filter, *a_ready, *a_config, *a_report, *a_resolve,
        *a_finish, *a_shared, *a_make, *a_policy, *a_hidden;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOOOOO!OO!O!:setup", keywords,
                                     &a_active, &a_warnings, &a_filter, &a_ready, &a_config,
                                     &a_report, &a_resolve, &a_finish, &PyDict_Type, &a_shared,
                                     &a_make, &PyType_Type, &a_policy, &PyList_Type, &a_hidden)) {
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
    Py_XSETREF(st->hidden, Py_NewRef(a_hidden));
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
    {"log_direct", (PyCFunction)(void (*)(void))log_direct, METH_FASTCALL | METH_KEYWORDS,
     "log_direct(logger, level, msg, args, *, pathname, lineno=0, extra=None)\n--\n\n"
     "Make ``logger``'s record of ``msg % args`` at ``level`` (attributed to\n"
     "``pathname``, ``lineno``) and handle it, as ``logger.handle`` would, whatever the\n"
     "logger's level; cheaper inside a guard. A guard's own ``PolicyViolation`` raises\n"
     "here as it would there (errpolicy/_direct.py's log_direct is the reference)."},
    {"setup_direct", (PyCFunction)(void (*)(void))setup_direct, METH_VARARGS | METH_KEYWORDS,
     "Hand over what log_direct reads (errpolicy._direct calls it once)."},
    {"lazy_original", (PyCFunction)(void (*)(void))lazy_original, METH_O,
     "lazy_original(Event): Event.original makes a record log_direct left pending on first\n"
     "read (and keeps it)."},
    {"set_null_sink", (PyCFunction)(void (*)(void))set_null_sink, METH_O,
     "set_null_sink(NullSink): a guard's exit skips finish() where it would do nothing."},
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
    Py_VISIT(st->pending_type);
    Py_VISIT(st->original_type);
    Py_VISIT(st->active);
    Py_VISIT(st->hidden);
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
    Py_VISIT(st->direct.python);
    Py_VISIT(st->direct.after);
    Py_VISIT(st->direct.direct_dict);
    Py_VISIT(st->direct.logging_dict);
    Py_VISIT(st->direct.layers);
    Py_VISIT(st->direct.placed);
    Py_VISIT(st->direct.inside);
    Py_VISIT(st->direct.handle);
    Py_VISIT(st->direct.make_record);
    Py_VISIT(st->direct.record_type);
    Py_VISIT(st->direct.get_message);
    Py_VISIT(st->direct.mapping);
    Py_VISIT(st->direct.threads);
    Py_VISIT(st->direct.level_names);
    Py_VISIT(st->direct.modules);
    Py_VISIT(st->direct.severities);
    Py_VISIT(st->direct.kept);
    Py_VISIT(st->direct.announce);
    Py_VISIT(st->direct.violation);
    Py_VISIT(st->direct.null_sink);
    Py_VISIT(st->direct.empty);
    Py_VISIT(st->direct.zero);
    Py_VISIT(st->direct.blank);
    Py_VISIT(st->direct.main_process);
    Py_VISIT(st->direct.source);
    Py_VISIT(st->direct.unnamed);
    Py_VISIT(st->direct.last_logger);
    Py_VISIT(st->direct.last_name);
    Py_VISIT(st->direct.last_level);
    Py_VISIT(st->direct.last_pathname);
    Py_VISIT(st->direct.last_lineno);
    Py_VISIT(st->direct.last_msg);
    Py_VISIT(st->direct.last_keys);
    Py_VISIT(st->direct.last_template);
    Py_VISIT(st->direct.logger_call_handlers);
    Py_VISIT(st->direct.cache_token);
    Py_VISIT(st->direct.matcher);
    Py_VISIT(st->direct.matcher_call);
    Py_VISIT(st->direct.instancecheck);
    Py_VISIT(st->direct.abc_check);
    Py_VISIT(st->direct.get_level_name);
    Py_VISIT(st->direct.thread_name);
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
    Py_CLEAR(st->pending_type);
    Py_CLEAR(st->original_type);
    Py_CLEAR(st->active);
    Py_CLEAR(st->hidden);
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
    Py_CLEAR(st->direct.python);
    Py_CLEAR(st->direct.after);
    Py_CLEAR(st->direct.direct_dict);
    Py_CLEAR(st->direct.logging_dict);
    Py_CLEAR(st->direct.layers);
    Py_CLEAR(st->direct.placed);
    Py_CLEAR(st->direct.inside);
    Py_CLEAR(st->direct.handle);
    Py_CLEAR(st->direct.make_record);
    Py_CLEAR(st->direct.record_type);
    Py_CLEAR(st->direct.get_message);
    Py_CLEAR(st->direct.mapping);
    Py_CLEAR(st->direct.threads);
    Py_CLEAR(st->direct.level_names);
    Py_CLEAR(st->direct.modules);
    Py_CLEAR(st->direct.severities);
    Py_CLEAR(st->direct.kept);
    Py_CLEAR(st->direct.announce);
    Py_CLEAR(st->direct.violation);
    Py_CLEAR(st->direct.null_sink);
    Py_CLEAR(st->direct.empty);
    Py_CLEAR(st->direct.zero);
    Py_CLEAR(st->direct.blank);
    Py_CLEAR(st->direct.main_process);
    Py_CLEAR(st->direct.source);
    Py_CLEAR(st->direct.unnamed);
    Py_CLEAR(st->direct.last_logger);
    Py_CLEAR(st->direct.last_name);
    Py_CLEAR(st->direct.last_level);
    Py_CLEAR(st->direct.last_pathname);
    Py_CLEAR(st->direct.last_lineno);
    Py_CLEAR(st->direct.last_msg);
    Py_CLEAR(st->direct.last_keys);
    Py_CLEAR(st->direct.last_template);
    Py_CLEAR(st->direct.logger_call_handlers);
    Py_CLEAR(st->direct.cache_token);
    Py_CLEAR(st->direct.matcher);
    Py_CLEAR(st->direct.matcher_call);
    Py_CLEAR(st->direct.instancecheck);
    Py_CLEAR(st->direct.abc_check);
    Py_CLEAR(st->direct.get_level_name);
    Py_CLEAR(st->direct.thread_name);
    Py_CLEAR(st->direct.s_prefixes);
    Py_CLEAR(st->direct.s_dunder_call);
    Py_CLEAR(st->direct.s_instancecheck);
    Py_CLEAR(st->direct.s_name_to_level);
    Py_CLEAR(st->direct.s_getlevelname);
    Py_CLEAR(st->direct.s_private_name);
    Py_CLEAR(st->direct.s_class);
    Py_CLEAR(st->direct.s_pathname);
    Py_CLEAR(st->direct.s_lineno);
    Py_CLEAR(st->direct.s_extra);
    Py_CLEAR(st->direct.s_call_handlers);
    Py_CLEAR(st->direct.s_slow);
    Py_CLEAR(st->direct.s_handle);
    Py_CLEAR(st->direct.s_make_record);
    Py_CLEAR(st->direct.s_disabled);
    Py_CLEAR(st->direct.s_filters);
    Py_CLEAR(st->direct.s_factory);
    Py_CLEAR(st->direct.s_log_threads);
    Py_CLEAR(st->direct.s_log_processes);
    Py_CLEAR(st->direct.s_log_multiprocessing);
    Py_CLEAR(st->direct.s_get_message);
    Py_CLEAR(st->direct.s_name);
    Py_CLEAR(st->direct.s_templates);
    Py_CLEAR(st->direct.s_time);
    Py_CLEAR(st->direct.s_created);
    Py_CLEAR(st->direct.s_msecs);
    Py_CLEAR(st->direct.s_relative);
    Py_CLEAR(st->direct.s_start_time);
    Py_CLEAR(st->direct.s_args);
    Py_CLEAR(st->direct.s_thread_name);
    Py_CLEAR(st->direct.s_levelname);
    Py_CLEAR(st->direct.s_process_name);
    Py_CLEAR(st->direct.s_task_name);
    Py_CLEAR(st->direct.s_levelno);
    Py_CLEAR(st->direct.s_lineno_attr);
    Py_CLEAR(st->direct.s_thread);
    Py_CLEAR(st->direct.s_dict);
    Py_CLEAR(st->direct.s_level_name);
    Py_CLEAR(st->direct.s_py_process_name);
    Py_CLEAR(st->direct.s_task_of_record);
    Py_CLEAR(st->direct.s_py_task_name);
    Py_CLEAR(st->direct.s_multiprocessing);
    Py_CLEAR(st->direct.s_asyncio);
    Py_CLEAR(st->direct.s_log_asyncio_tasks);
    Py_CLEAR(st->direct.s_takes);
    Py_CLEAR(st->direct.s_capture);
    Py_CLEAR(st->direct.s_sink);
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
    if (intern(&st->direct.blank, "") < 0 || intern(&st->direct.main_process, "MainProcess") < 0
        || intern(&st->direct.source, "logging") < 0
        || intern(&st->direct.s_pathname, "pathname") < 0
        || intern(&st->direct.s_lineno, "lineno") < 0
        || intern(&st->direct.s_extra, "extra") < 0
        || intern(&st->direct.s_call_handlers, "callHandlers") < 0
        || intern(&st->direct.s_slow, "slow") < 0
        || intern(&st->direct.s_handle, "handle") < 0
        || intern(&st->direct.s_make_record, "makeRecord") < 0
        || intern(&st->direct.s_disabled, "disabled") < 0
        || intern(&st->direct.s_filters, "filters") < 0
        || intern(&st->direct.s_factory, "_logRecordFactory") < 0
        || intern(&st->direct.s_log_threads, "logThreads") < 0
        || intern(&st->direct.s_log_processes, "logProcesses") < 0
        || intern(&st->direct.s_log_multiprocessing, "logMultiprocessing") < 0
        || intern(&st->direct.s_get_message, "getMessage") < 0
        || intern(&st->direct.s_name, "name") < 0
        || intern(&st->direct.s_templates, "_templates") < 0
        || intern(&st->direct.s_time, TIME_NAME) < 0
        || intern(&st->direct.s_created, "created") < 0
        || intern(&st->direct.s_msecs, "msecs") < 0
        || intern(&st->direct.s_relative, "relativeCreated") < 0
        || intern(&st->direct.s_start_time, "_startTime") < 0
        || intern(&st->direct.s_args, "args") < 0
        || intern(&st->direct.s_thread_name, "threadName") < 0
        || intern(&st->direct.s_levelname, "levelname") < 0
        || intern(&st->direct.s_process_name, "processName") < 0
        || intern(&st->direct.s_task_name, "taskName") < 0
        || intern(&st->direct.s_levelno, "levelno") < 0
        || intern(&st->direct.s_lineno_attr, "lineno") < 0
        || intern(&st->direct.s_thread, "thread") < 0
        || intern(&st->direct.s_dict, "__dict__") < 0
        || intern(&st->direct.s_level_name, "_level_name") < 0
        || intern(&st->direct.s_py_process_name, "_process_name") < 0
        || intern(&st->direct.s_task_of_record, "_task_of_record") < 0
        || intern(&st->direct.s_py_task_name, "_task_name") < 0
        || intern(&st->direct.s_multiprocessing, "multiprocessing") < 0
        || intern(&st->direct.s_asyncio, "asyncio") < 0
        || intern(&st->direct.s_log_asyncio_tasks, "logAsyncioTasks") < 0
        || intern(&st->direct.s_takes, "takes") < 0
        || intern(&st->direct.s_capture, "capture") < 0
        || intern(&st->direct.s_sink, "sink") < 0
        || intern(&st->direct.s_prefixes, "prefixes") < 0
        || intern(&st->direct.s_dunder_call, "__call__") < 0
        || intern(&st->direct.s_instancecheck, "__instancecheck__") < 0
        || intern(&st->direct.s_name_to_level, "_nameToLevel") < 0
        || intern(&st->direct.s_getlevelname, "getLevelName") < 0
        || intern(&st->direct.s_private_name, "_name") < 0
        || intern(&st->direct.s_class, "__class__") < 0) {
        return -1;
    }
    st->direct.empty = PyTuple_New(0);
    st->direct.zero = PyLong_FromLong(0);
    if (st->direct.empty == NULL || st->direct.zero == NULL) {
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
    st->pending_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &pending_spec, NULL);
    st->original_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &original_spec, NULL);
    if (st->pending_type == NULL || st->original_type == NULL) {
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
