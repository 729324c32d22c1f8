/* asyncq._speedups: the storage of a job handle, written in C.
 *
 * Optional. When this module is not built (no C compiler when asyncq was installed) or
 * ASYNCQ_PURE_PYTHON=1 is set, asyncq._job uses its pure-Python twin, _JobSlots, which has
 * the same fields and the same behaviour; the test suite runs against both.
 *
 * Why it exists: a caller may hold hundreds of thousands of job handles, and Python's
 * cyclic garbage collector walks every one of them in each of its passes.  A Python class
 * with __slots__ is walked by a generic routine that looks at each slot in turn; this type
 * walks its fields directly, as asyncio's own C Future does.  It also makes awaiting a
 * finished job cheap: ``await job`` on a succeeded job hands back the result through a
 * small iterator instead of starting a Python generator.
 *
 * What lives here is storage and those two things only.  Every method of a job (done,
 * cancel, settle, ...) is Python, in asyncq/_job.py, on the class Job that derives from
 * JobBase.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* JobState.WAITING and JobState.SUCCEEDED, and the class Job a succeeded job is moved to
 * (see let_go), handed over once by asyncq._job (set_states). */
static PyObject *waiting_state = NULL;
static PyObject *succeeded_state = NULL;
static PyTypeObject *finished_class = NULL;

/* -- Ready: the iterator ``await job`` gets for a job that has already succeeded -------- */

typedef struct {
    PyObject_HEAD
    PyObject *value; /* the result; NULL once handed out */
} Ready;

static int
ready_traverse(Ready *self, visitproc visit, void *arg)
{
    Py_VISIT(self->value);
    return 0;
}

static int
ready_clear(Ready *self)
{
    Py_CLEAR(self->value);
    return 0;
}

static void
ready_dealloc(Ready *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->value);
    PyObject_GC_Del(self);
}

/* The path ``await`` takes on 3.11 (PyIter_Send): return the result without raising.  Once
 * handed out, it returns None, as a finished generator does. */
static PySendResult
ready_send(Ready *self, PyObject *Py_UNUSED(arg), PyObject **result)
{
    PyObject *value = self->value;
    self->value = NULL;
    *result = value != NULL ? value : Py_NewRef(Py_None); /* the reference moves */
    return PYGEN_RETURN;
}

/* The path of next() (and of ``await`` on 3.12+): StopIteration carrying the result. */
static PyObject *
ready_next(Ready *self)
{
    PyObject *value = self->value;
    if (value == NULL) {
        return NULL; /* exhausted: a bare StopIteration */
    }
    self->value = NULL;
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    Py_DECREF(value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

/* send(), throw() and close(), so that code driving ``job.__await__()`` by hand finds the
 * generator methods it would find on the pure-Python storage. */
static PyObject *
ready_send_method(Ready *self, PyObject *Py_UNUSED(arg))
{
    return ready_next(self);
}

static PyObject *
ready_throw(Ready *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    Py_CLEAR(self->value);
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : NULL;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val != NULL ? val : Py_None);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
    }
    return NULL;
}

static PyObject *
ready_close(Ready *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(self->value);
    Py_RETURN_NONE;
}

static PyMethodDef ready_methods[] = {
    {"send", (PyCFunction)ready_send_method, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))ready_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)ready_close, METH_NOARGS, NULL},
    {NULL},
};

static PyAsyncMethods ready_as_async = {
    .am_send = (sendfunc)ready_send,
};

static PyTypeObject ReadyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asyncq._speedups.Ready",
    .tp_doc = "The result of a finished job, on its way to ``await``.",
    .tp_basicsize = sizeof(Ready),
    .tp_dealloc = (destructor)ready_dealloc,
    .tp_as_async = &ready_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)ready_traverse,
    .tp_clear = (inquiry)ready_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)ready_next,
    .tp_methods = ready_methods,
};

/* -- JobBase ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *outcome;
    PyObject *args;
    PyObject *attempts;
    PyObject *extra;
    PyObject *first_failed_at;
    PyObject *fn;
    Py_ssize_t id;  /* a number, not an object: a caller may hold a million handles */
    PyObject *kwargs;
    PyObject *options;
    PyObject *state;
    PyObject *weakreflist;
} JobBase;

/* Visit only what the collector tracks.  A finished job's fields are mostly None, ints
 * (attempts, often its result) or shared objects; calling the collector's visit
 * function for an untracked object does nothing, so the call is skipped here.  (For
 * objects whose type supports the collector but which are not tracked themselves, the
 * visit still happens; that is as cheap as it was and still correct.) */
#define VISIT_TRACKED(field)                                                        \
    do {                                                                            \
        PyObject *obj_ = (PyObject *)(field);                                       \
        if (obj_ != NULL && PyType_IS_GC(Py_TYPE(obj_))) {                          \
            int err_ = visit(obj_, arg);                                            \
            if (err_) {                                                             \
                return err_;                                                        \
            }                                                                       \
        }                                                                           \
    } while (0)

static int
job_traverse(JobBase *self, visitproc visit, void *arg)
{
    VISIT_TRACKED(self->outcome);
    VISIT_TRACKED(self->args);
    VISIT_TRACKED(self->attempts);
    VISIT_TRACKED(self->extra);
    VISIT_TRACKED(self->first_failed_at);
    VISIT_TRACKED(self->fn);
    VISIT_TRACKED(self->kwargs);
    VISIT_TRACKED(self->options);
    /* self->state is not visited: it is always a member of asyncq.JobState, which the
     * module asyncq._job keeps alive, so it can never be part of unreachable garbage.  Not
     * visiting it only means the collector counts one reference to it as coming from
     * outside the generation, which is true of the module's own reference anyway. */
    return 0;
}

/* The traverse of a Python subclass adopted by adopt(): its instances also hold their
 * class (a heap type), which the collector must see, as subtype_traverse would show it. */
static int
job_traverse_heap(JobBase *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return job_traverse(self, visit, arg);
}

static int
job_clear(JobBase *self)
{
    Py_CLEAR(self->outcome);
    Py_CLEAR(self->args);
    Py_CLEAR(self->attempts);
    Py_CLEAR(self->extra);
    Py_CLEAR(self->first_failed_at);
    Py_CLEAR(self->fn);
    Py_CLEAR(self->kwargs);
    Py_CLEAR(self->options);
    Py_CLEAR(self->state);
    return 0;
}

static void
job_dealloc(JobBase *self)
{
    /* Python subclasses come here through subtype_dealloc, which releases the class. */
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    job_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ``await job``: a succeeded job's result at once; anything else waits in Python. */
static PyObject *
job_await(JobBase *self)
{
    if (succeeded_state != NULL && self->state == succeeded_state && self->outcome != NULL) {
        Ready *ready = PyObject_GC_New(Ready, &ReadyType);
        if (ready == NULL) {
            return NULL;
        }
        ready->value = Py_NewRef(self->outcome);
        PyObject_GC_Track(ready);
        return (PyObject *)ready;
    }
    return PyObject_CallMethod((PyObject *)self, "_wait", NULL);
}

static PyAsyncMethods job_as_async = {
    .am_await = (unaryfunc)job_await,
};

/* T_OBJECT_EX: reading an unset field raises AttributeError, as an unset slot does.
 * ``state`` must only ever hold a member of asyncq.JobState (see job_traverse).  ``id`` is
 * a C integer (an int object per handle would stay alive as long as the handle), read as
 * a new int; it is set by make_job(), the only way the pool makes a job. */
static PyMemberDef job_members[] = {
    {"_outcome", T_OBJECT_EX, offsetof(JobBase, outcome), 0, NULL},
    {"args", T_OBJECT_EX, offsetof(JobBase, args), 0, NULL},
    {"attempts", T_OBJECT_EX, offsetof(JobBase, attempts), 0, NULL},
    {"extra", T_OBJECT_EX, offsetof(JobBase, extra), 0, NULL},
    {"first_failed_at", T_OBJECT_EX, offsetof(JobBase, first_failed_at), 0, NULL},
    {"fn", T_OBJECT_EX, offsetof(JobBase, fn), 0, NULL},
    {"id", T_PYSSIZET, offsetof(JobBase, id), 0, NULL},
    {"kwargs", T_OBJECT_EX, offsetof(JobBase, kwargs), 0, NULL},
    {"options", T_OBJECT_EX, offsetof(JobBase, options), 0, NULL},
    {"state", T_OBJECT_EX, offsetof(JobBase, state), 0, NULL},
    /* what a slotted class shows: the first weak reference, or None */
    {"__weakref__", T_OBJECT, offsetof(JobBase, weakreflist), READONLY, NULL},
    {NULL},
};

static PyTypeObject JobBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asyncq._speedups.JobBase",
    .tp_doc = "The fields of a job handle; asyncq.Job adds the behaviour.",
    .tp_basicsize = sizeof(JobBase),
    .tp_dealloc = (destructor)job_dealloc,
    .tp_as_async = &job_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)job_traverse,
    .tp_clear = (inquiry)job_clear,
    .tp_weaklistoffset = offsetof(JobBase, weakreflist),
    .tp_members = job_members,
    /* tp_new is object's (set at import): like a slotted class, it refuses arguments */
};

/* -- module functions -------------------------------------------------------------------- */

/* make_job(cls, id, fn, args, kwargs, options): a WAITING job with every field set, as
 * asyncq._job.make_job does in Python.  One call instead of ten attribute stores. */
static PyObject *
make_job(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "make_job() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *cls = args[0];
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &JobBaseType)) {
        PyErr_Format(PyExc_TypeError, "make_job() needs a subclass of JobBase, got %R", cls);
        return NULL;
    }
    if (waiting_state == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "make_job() before set_states()");
        return NULL;
    }
    Py_ssize_t id = PyLong_AsSsize_t(args[1]);
    if (id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    JobBase *job = (JobBase *)type->tp_alloc(type, 0);
    if (job == NULL) {
        return NULL;
    }
    job->id = id;
    job->fn = Py_NewRef(args[2]);
    job->args = Py_NewRef(args[3]);
    job->kwargs = Py_NewRef(args[4]);
    job->options = Py_NewRef(args[5]);
    job->state = Py_NewRef(waiting_state);
    job->attempts = PyLong_FromLong(0); /* a cached small int: cannot fail */
    job->outcome = Py_NewRef(Py_None);
    job->extra = Py_NewRef(Py_None);
    job->first_failed_at = Py_NewRef(Py_None);
    return (PyObject *)job;
}

/* Give a Python subclass that adds no storage of its own the direct traverse above.  A
 * class made by a ``class`` statement is walked by CPython's generic subtype_traverse,
 * which first looks for slots along the class's bases; for a class whose instances are
 * exactly a JobBase, that search finds nothing, so it can be skipped. */
static PyObject *
adopt(PyObject *Py_UNUSED(module), PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &JobBaseType)) {
        PyErr_Format(PyExc_TypeError, "adopt() needs a subclass of JobBase, got %R", cls);
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type == &JobBaseType) {
        Py_RETURN_NONE;
    }
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || type->tp_basicsize != JobBaseType.tp_basicsize
        || type->tp_dictoffset != 0 || type->tp_finalize != NULL || type->tp_del != NULL) {
        PyErr_Format(PyExc_TypeError,
                     "adopt() needs a class with __slots__ = () and no __del__, got %R", cls);
        return NULL;
    }
    type->tp_traverse = (traverseproc)job_traverse_heap;
    Py_RETURN_NONE;
}

static PyObject *
set_states(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "set_states(waiting, succeeded, finished_class)");
        return NULL;
    }
    PyObject *cls = args[2];
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &JobBaseType)
        || ((PyTypeObject *)cls)->tp_basicsize != JobBaseType.tp_basicsize
        || ((PyTypeObject *)cls)->tp_traverse != (traverseproc)job_traverse_heap) {
        PyErr_Format(PyExc_TypeError, "set_states() needs an adopted subclass of JobBase, got %R",
                     cls);
        return NULL;
    }
    Py_XSETREF(waiting_state, Py_NewRef(args[0]));
    Py_XSETREF(succeeded_state, Py_NewRef(args[1]));
    Py_XSETREF(finished_class, (PyTypeObject *)Py_NewRef(cls));
    Py_RETURN_NONE;
}

/* Whether obj can never refer, now or later, to an object the collector tracks: CPython's
 * own rule for untracking containers, the same as asyncq._options.atomic.  An object whose
 * type has no collector support holds no references that matter (ints, floats, strings,
 * bytes, None, ...); an exact tuple the collector has untracked holds only such objects
 * and cannot change; a small exact tuple (at most 8 items, nested at most 4 deep) of
 * atomic objects is as safe.  Anything else (a dict, even one the collector has
 * untracked, a list, an instance of a class written in Python) could be given a
 * reference to the job later. */
#define ATOMIC_TUPLE_MAX 8
#define ATOMIC_DEPTH_MAX 4

static int
atomic(PyObject *obj, int depth)
{
    if (!PyType_IS_GC(Py_TYPE(obj))) {
        return 1;
    }
    if (!PyTuple_CheckExact(obj)) {
        return 0;
    }
    if (!PyObject_GC_IsTracked(obj)) {
        return 1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(obj);
    if (size > ATOMIC_TUPLE_MAX || depth >= ATOMIC_DEPTH_MAX) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        if (!atomic(PyTuple_GET_ITEM(obj, i), depth + 1)) {
            return 0;
        }
    }
    return 1;
}

/* What a succeeded job lets go of (after its result is set): its function, the time of
 * its first failure (kept for a dead letter only), and its pool, by moving from the pool's
 * own subclass to the class Job itself (same layout, no storage of its own: as
 * ``job.__class__ = Job`` does).  Then, when nothing it still holds can lead back to it,
 * it leaves the collector's lists.
 *
 * That is the rule CPython applies to tuples and dicts holding only atoms: an object may
 * go untracked when none of its references is, or can become, one to a tracked object,
 * because it can then be part of no cycle.  What a succeeded job still holds: its result
 * (atomic(), checked here), its options (``inert`` from the caller: JobOptions.inert says
 * they reach no object that could refer back to a job), its state (a JobState member),
 * attempts (an int), the class Job (kept by its module), and None in every other field.
 * Nothing in asyncq writes to a job's fields once it has succeeded.  A caller holding a
 * million finished handles then costs the collector nothing.
 *
 * Python code may delete a field (it is then NULL): that job simply stays tracked. */
static int
release(JobBase *job, PyObject *inert)
{
    Py_XSETREF(job->fn, Py_NewRef(Py_None));
    Py_XSETREF(job->first_failed_at, Py_NewRef(Py_None));
    PyTypeObject *type = Py_TYPE(job);
    if (finished_class == NULL || !PyType_IsSubtype(type, finished_class)) {
        return 0; /* not a pool's job: keep it as it is, tracked */
    }
    if (type != finished_class) {
        /* the adopted subclasses share JobBase's layout (checked by adopt and set_states) */
        Py_SET_TYPE(job, (PyTypeObject *)Py_NewRef(finished_class));
        Py_DECREF(type);
    }
    if (inert == Py_True && job->extra == Py_None && job->args == Py_None
        && job->kwargs == Py_None && job->state == succeeded_state
        && job->attempts != NULL && !PyType_IS_GC(Py_TYPE(job->attempts))
        && job->outcome != NULL && atomic(job->outcome, 0)
        && PyObject_GC_IsTracked((PyObject *)job)) {
        PyObject_GC_UnTrack(job);
    }
    return 0;
}

static JobBase *
job_arg(PyObject *obj, const char *name)
{
    if (!PyObject_TypeCheck(obj, &JobBaseType)) {
        PyErr_Format(PyExc_TypeError, "%s() needs a job, got %R", name, obj);
        return NULL;
    }
    if (succeeded_state == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s() before set_states()", name);
        return NULL;
    }
    return (JobBase *)obj;
}

/* let_go(job, inert): release() for a job whose result is already set (Outcomes.succeed). */
static PyObject *
let_go(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "let_go() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    JobBase *job = job_arg(args[0], "let_go");
    if (job == NULL || job->state != succeeded_state) {
        if (job != NULL) {
            PyErr_SetString(PyExc_ValueError, "let_go() needs a succeeded job");
        }
        return NULL;
    }
    release(job, args[1]);
    Py_RETURN_NONE;
}

/* finish(job, result, inert): a running job succeeds.  SUCCEEDED, the result kept, the
 * arguments dropped, then release(); returns what ``_outcome`` held before (the callers'
 * futures to wake, or None).  One call for the worker's common case. */
static PyObject *
finish(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "finish() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    JobBase *job = job_arg(args[0], "finish");
    if (job == NULL) {
        return NULL;
    }
    PyObject *waiters = job->outcome; /* handed to the caller */
    job->outcome = Py_NewRef(args[1]);
    Py_XSETREF(job->state, Py_NewRef(succeeded_state));
    Py_XSETREF(job->args, Py_NewRef(Py_None));
    Py_XSETREF(job->kwargs, Py_NewRef(Py_None));
    release(job, args[2]);
    return waiters != NULL ? waiters : Py_NewRef(Py_None);
}

/* untrack_inert(options): take a JobOptions out of the collector's lists when its
 * ``inert`` is True (JobOptions.__post_init__ has then checked that nothing it holds can
 * refer back to it or to a job: it can be part of no cycle).  Per-job options, such as
 * ``pool.options(delay=d)`` for each job, then cost the collector nothing once their jobs
 * have succeeded.  Anything else is left as it is. */
static PyObject *
untrack_inert(PyObject *Py_UNUSED(module), PyObject *obj)
{
    PyObject *inert = PyObject_GetAttrString(obj, "inert");
    if (inert == NULL) {
        return NULL;
    }
    int yes = inert == Py_True;
    Py_DECREF(inert);
    if (yes && PyObject_GC_IsTracked(obj)) {
        PyObject_GC_UnTrack(obj);
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"adopt", adopt, METH_O, "adopt(cls): walk cls's instances directly in the collector."},
    {"make_job", (PyCFunction)(void (*)(void))make_job, METH_FASTCALL,
     "make_job(cls, id, fn, args, kwargs, options): a WAITING job, every field set."},
    {"set_states", (PyCFunction)(void (*)(void))set_states, METH_FASTCALL,
     "set_states(waiting, succeeded, finished_class): what the C code needs from _job."},
    {"finish", (PyCFunction)(void (*)(void))finish, METH_FASTCALL,
     "finish(job, result, inert): the job succeeds; returns the futures to wake, or None."},
    {"let_go", (PyCFunction)(void (*)(void))let_go, METH_FASTCALL,
     "let_go(job, inert): a succeeded job drops its function and pool (see release)."},
    {"untrack_inert", untrack_inert, METH_O,
     "untrack_inert(options): out of the collector's lists if options.inert is True."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "asyncq._speedups",
    .m_doc = "The storage of asyncq's job handle, in C (optional).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    JobBaseType.tp_new = PyBaseObject_Type.tp_new;
    if (PyType_Ready(&ReadyType) < 0 || PyType_Ready(&JobBaseType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "JobBase", (PyObject *)&JobBaseType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
