/*
 * adu_pgcopy: decodes `COPY ... TO STDOUT (FORMAT binary)` into Arrow column buffers, and
 * encodes Arrow column buffers as the rows of `COPY ... FROM STDIN (FORMAT binary)` (encode,
 * at the end: a load's plain tables go in so, the server's binary input being cheaper to
 * parse than CSV).
 *
 * It drives the libpq connection of a psycopg2 session (its PGconn pointer) through the
 * very libpq psycopg2 loaded, looked up with dlopen(RTLD_NOLOAD): psycopg2 hands COPY
 * data to Python one row at a time, which costs more CPU than the rest of an export.
 * Here the rows of a whole batch are received and decoded with the GIL released.
 *
 * A value the column's Arrow type cannot hold exactly (a date 'infinity', numeric NaN,
 * 24:00:00, a year outside 1..9999) raises DoesNotFit(column index, reason); the caller
 * reads the table again with that column as the server's text output.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libpq's API, declared here: psycopg2's own copy of libpq has no headers. */
typedef void PGconn;
typedef void PGresult;
enum { PGRES_COMMAND_OK = 1, PGRES_COPY_OUT = 3 };
#define PG_DIAG_SQLSTATE 'C'
#define PG_DIAG_MESSAGE_PRIMARY 'M'

static struct {
    PGresult *(*exec)(PGconn *, const char *);
    int (*result_status)(const PGresult *);
    int (*get_copy_data)(PGconn *, char **, int);
    void (*freemem)(void *);
    PGresult *(*get_result)(PGconn *);
    char *(*result_error_field)(const PGresult *, int);
    char *(*result_error_message)(const PGresult *);
    void (*clear)(PGresult *);
    char *(*error_message)(const PGconn *);
    char *(*cmd_tuples)(PGresult *);
} pq;

static PyObject *CopyFailed;  /* (sqlstate or None, message) */
static PyObject *DoesNotFit;  /* (column index, reason) */

enum kind {
    K_BOOL = 1, K_INT16, K_INT32, K_INT64, K_OID, K_FLOAT32, K_FLOAT64,
    K_DATE, K_TIMESTAMP, K_TIME, K_DECIMAL, K_STRING, K_BINARY, K_UUID,
};

/* Arrow's CSV path (and so ADU's other readers) holds years 1 to 9999 natively. */
#define PG_EPOCH_DAYS 10957                       /* 1970-01-01 to 2000-01-01 */
#define PG_EPOCH_US INT64_C(946684800000000)
#define MIN_DAYS (-719162)                        /* 0001-01-01 */
#define MAX_DAYS 2932896                          /* 9999-12-31 */
#define US_PER_DAY INT64_C(86400000000)

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

typedef struct {
    int kind, width, precision, scale;
    Buf values, offsets, validity;
    int64_t nulls;
} Column;

typedef struct {
    PyObject_HEAD
    PGconn *conn;
    int ncols;
    Column *cols;
    Buf carry;         /* a partial row, or rows left over when a batch filled up */
    size_t carry_pos;
    int header_done, trailer_seen, finished;
    int64_t rows;      /* in the current batch */
    /* a failure met with the GIL released, raised after */
    int fail_column;
    char fail_reason[160];
    char *copy_error_state;
    char *copy_error_message;
    long long sent;    /* rows the server says the COPY sent ("COPY n"); -1 until it ends */
} Decoder;

static int buf_reserve(Buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_free(Buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static inline uint16_t be16(const char *p) { return (uint16_t)((uint8_t)p[0] << 8 | (uint8_t)p[1]); }
static inline uint32_t be32(const char *p)
{
    return (uint32_t)(uint8_t)p[0] << 24 | (uint32_t)(uint8_t)p[1] << 16 |
           (uint32_t)(uint8_t)p[2] << 8 | (uint32_t)(uint8_t)p[3];
}
static inline uint64_t be64(const char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static int not_fit(Decoder *d, int column, const char *reason)
{
    d->fail_column = column;
    snprintf(d->fail_reason, sizeof d->fail_reason, "%s", reason);
    return -2;
}

static int fail(Decoder *d, const char *message)
{
    d->fail_column = -1;
    snprintf(d->fail_reason, sizeof d->fail_reason, "%s", message);
    return -1;
}

/* Validity bits are kept only once a null shows up; rows before it were all valid. */
static int set_validity(Column *c, int64_t row, int valid)
{
    size_t need = (size_t)(row / 8 + 1);
    if (c->validity.len < need) {
        size_t old = c->validity.len;
        if (buf_reserve(&c->validity, need - old))
            return -1;
        memset(c->validity.data + old, 0xff, need - old);
        c->validity.len = need;
    }
    if (!valid)
        c->validity.data[row / 8] &= (char)~(1 << (row % 8));
    return 0;
}

static __int128 POW10[39];  /* 10^0 .. 10^38 */

/*
 * A numeric's base-10000 digits as the unscaled integer at the column's scale. Each digit
 * is placed by a multiplication; a digit group reaching past the scale must end in zeros
 * there (the column's typmod makes it so), checked with a small division.
 */
static int numeric_to_decimal(Decoder *d, int column, Column *c, const char *p, int32_t len,
                              __int128 *out)
{
    if (len < 8)
        return fail(d, "numeric value too short");
    int ndigits = (int16_t)be16(p);
    int weight = (int16_t)be16(p + 2);
    uint16_t sign = be16(p + 4);
    if (sign == 0xC000)
        return not_fit(d, column, "NaN");
    if (sign == 0xD000 || sign == 0xF000)
        return not_fit(d, column, "infinity");
    if (ndigits < 0 || len != 8 + 2 * ndigits)
        return fail(d, "numeric value of the wrong length");
    unsigned __int128 acc = 0;  /* < 2 * 10^38 before each check: no overflow */
    for (int i = 0; i < ndigits; i++) {
        int digit = be16(p + 8 + 2 * i);
        int exponent = 4 * (weight - i) + c->scale;
        if (exponent < 0) {
            if (exponent <= -4 ? digit != 0 : digit % (int)POW10[-exponent] != 0)
                return not_fit(d, column, "more decimals than the column's scale");
            if (exponent > -4)
                acc += digit / (int)POW10[-exponent];
            continue;
        }
        int room = c->precision - exponent;  /* the digits left for this group's value */
        if (room <= 0 ? digit != 0 : room < 4 && digit >= POW10[room])
            return not_fit(d, column, "more digits than the column's precision");
        acc += digit * (unsigned __int128)POW10[exponent];
        if (acc >= (unsigned __int128)POW10[c->precision])
            return not_fit(d, column, "more digits than the column's precision");
    }
    *out = sign == 0x4000 ? -(__int128)acc : (__int128)acc;
    return 0;
}

/* One value into its column; -1 on a broken stream, -2 when it does not fit. */
static int put_value(Decoder *d, int i, const char *p, int32_t len)
{
    Column *c = &d->cols[i];
    int64_t row = d->rows;
    if (len < 0) {
        c->nulls++;
        if (set_validity(c, row, 0))
            return fail(d, "out of memory");
        if (c->kind == K_STRING || c->kind == K_BINARY) {
            if (buf_reserve(&c->offsets, 4))
                return fail(d, "out of memory");
            int32_t end = (int32_t)c->values.len;
            memcpy(c->offsets.data + c->offsets.len, &end, 4);
            c->offsets.len += 4;
        } else if (c->kind == K_BOOL) {
            if (c->values.len < (size_t)(row / 8 + 1)) {
                if (buf_reserve(&c->values, 1))
                    return fail(d, "out of memory");
                c->values.data[c->values.len++] = 0;
            }
        } else {
            if (buf_reserve(&c->values, c->width))
                return fail(d, "out of memory");
            memset(c->values.data + c->values.len, 0, c->width);
            c->values.len += c->width;
        }
        return 0;
    }
    if (c->validity.len && set_validity(c, row, 1))
        return fail(d, "out of memory");
    if (c->kind == K_STRING || c->kind == K_BINARY) {
        if (buf_reserve(&c->values, len) || buf_reserve(&c->offsets, 4))
            return fail(d, "out of memory");
        memcpy(c->values.data + c->values.len, p, len);
        c->values.len += len;
        int32_t end = (int32_t)c->values.len;
        memcpy(c->offsets.data + c->offsets.len, &end, 4);
        c->offsets.len += 4;
        return 0;
    }
    if (c->kind == K_BOOL) {
        if (len != 1)
            return fail(d, "bool value of the wrong length");
        size_t need = (size_t)(row / 8 + 1);
        if (c->values.len < need) {
            if (buf_reserve(&c->values, 1))
                return fail(d, "out of memory");
            c->values.data[c->values.len++] = 0;
        }
        if (*p)
            c->values.data[row / 8] |= (char)(1 << (row % 8));
        return 0;
    }
    int expected = c->kind == K_DECIMAL ? -1 : c->kind == K_OID ? 4 : c->width;
    if (expected >= 0 && len != expected)
        return fail(d, "value of the wrong length for its type");
    if (buf_reserve(&c->values, c->width))
        return fail(d, "out of memory");
    char *out = c->values.data + c->values.len;
    switch (c->kind) {
    case K_INT16: {
        int16_t v = (int16_t)be16(p);
        memcpy(out, &v, 2);
        break;
    }
    case K_INT32:
    case K_FLOAT32: {
        uint32_t v = be32(p);
        memcpy(out, &v, 4);
        break;
    }
    case K_INT64:
    case K_FLOAT64: {
        uint64_t v = be64(p);
        memcpy(out, &v, 8);
        break;
    }
    case K_OID: {
        int64_t v = be32(p);
        memcpy(out, &v, 8);
        break;
    }
    case K_DATE: {
        int32_t days = (int32_t)be32(p);
        if (days == INT32_MAX || days == INT32_MIN)
            return not_fit(d, i, "infinity");
        int64_t unix_days = (int64_t)days + PG_EPOCH_DAYS;
        if (unix_days < MIN_DAYS || unix_days > MAX_DAYS)
            return not_fit(d, i, "a year outside 1 to 9999");
        int32_t v = (int32_t)unix_days;
        memcpy(out, &v, 4);
        break;
    }
    case K_TIMESTAMP: {
        int64_t us = (int64_t)be64(p);
        if (us == INT64_MAX || us == INT64_MIN)
            return not_fit(d, i, "infinity");
        int64_t unix_us = us + PG_EPOCH_US;
        if (unix_us < MIN_DAYS * US_PER_DAY || unix_us >= (MAX_DAYS + 1) * US_PER_DAY)
            return not_fit(d, i, "a year outside 1 to 9999");
        memcpy(out, &unix_us, 8);
        break;
    }
    case K_TIME: {
        int64_t us = (int64_t)be64(p);
        if (us < 0 || us >= US_PER_DAY)
            return not_fit(d, i, "24:00:00");
        memcpy(out, &us, 8);
        break;
    }
    case K_DECIMAL: {
        __int128 v;
        int rc = numeric_to_decimal(d, i, c, p, len, &v);
        if (rc)
            return rc;
        memcpy(out, &v, 16);
        break;
    }
    case K_UUID:
        memcpy(out, p, 16);
        break;
    default:
        return fail(d, "unknown column kind");
    }
    c->values.len += c->width;
    return 0;
}

/*
 * Decode the complete rows at p[0..n): *used is what was consumed. Returns 0 when more
 * data is needed, 1 when the batch is full, 2 after the trailer, <0 on failure.
 */
static int decode(Decoder *d, const char *p, size_t n, size_t *used, int64_t max_rows,
                  size_t max_bytes, size_t *bytes)
{
    size_t pos = 0;
    if (!d->header_done) {
        if (n < 19)
            return *used = 0, 0;
        if (memcmp(p, "PGCOPY\n\377\r\n\0", 11) != 0)
            return fail(d, "not a binary COPY stream");
        size_t extension = be32(p + 15);
        if (n < 19 + extension)
            return *used = 0, 0;
        pos = 19 + extension;
        d->header_done = 1;
    }
    while (1) {
        if (d->rows >= max_rows || *bytes >= max_bytes) {
            *used = pos;
            return 1;
        }
        if (n - pos < 2) {
            *used = pos;
            return 0;
        }
        int fields = (int16_t)be16(p + pos);
        if (fields == -1) {
            d->trailer_seen = 1;
            *used = n;
            return 2;
        }
        if (fields != d->ncols)
            return fail(d, "a row with an unexpected number of columns");
        /* Walk the row first: decode it only once it is complete. */
        size_t end = pos + 2;
        for (int i = 0; i < fields; i++) {
            if (n - end < 4) {
                *used = pos;
                return 0;
            }
            int32_t len = (int32_t)be32(p + end);
            end += 4;
            if (len > 0) {
                if (n - end < (size_t)len) {
                    *used = pos;
                    return 0;
                }
                end += len;
            }
        }
        size_t at = pos + 2;
        for (int i = 0; i < fields; i++) {
            int32_t len = (int32_t)be32(p + at);
            at += 4;
            int rc = put_value(d, i, p + at, len);
            if (rc)
                return rc;
            if (len > 0)
                at += len;
        }
        *bytes += end - pos;
        d->rows++;
        pos = end;
    }
}

static void remember_copy_error(Decoder *d, PGresult *result)
{
    const char *state = result ? pq.result_error_field(result, PG_DIAG_SQLSTATE) : NULL;
    /* The primary message, as psycopg2 gives it: no "ERROR:  " before it. */
    const char *primary = result ? pq.result_error_field(result, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *message = primary ? primary
                          : result ? pq.result_error_message(result)
                                   : pq.error_message(d->conn);
    free(d->copy_error_state);
    free(d->copy_error_message);
    d->copy_error_state = state ? strdup(state) : NULL;
    d->copy_error_message = strdup(message && *message ? message : "the COPY failed");
}

/* After the last CopyData: the COPY's own result says whether it succeeded. */
static int end_copy(Decoder *d)
{
    int rc = 0;
    PGresult *result;
    while ((result = pq.get_result(d->conn)) != NULL) {
        if (pq.result_status(result) != PGRES_COMMAND_OK && rc == 0) {
            remember_copy_error(d, result);
            rc = -3;
        } else if (rc == 0) {
            const char *tuples = pq.cmd_tuples(result);
            char *end = NULL;
            long long n = tuples && *tuples ? strtoll(tuples, &end, 10) : -1;
            d->sent = (end && *end == '\0' && n >= 0) ? n : -1;
        }
        pq.clear(result);
    }
    d->finished = 1;
    return rc;
}

/* Fill the batch; with the GIL released. */
static int fill(Decoder *d, int64_t max_rows, size_t max_bytes)
{
    size_t bytes = 0;
    while (1) {
        if (d->carry.len > d->carry_pos) {
            size_t used;
            int rc = decode(d, d->carry.data + d->carry_pos, d->carry.len - d->carry_pos,
                            &used, max_rows, max_bytes, &bytes);
            d->carry_pos += used;
            if (d->carry_pos == d->carry.len)
                d->carry.len = d->carry_pos = 0;
            if (rc < 0)
                return rc;
            if (rc == 1)
                return 0;
        }
        char *message = NULL;
        int n = pq.get_copy_data(d->conn, &message, 0);
        if (n == -1) {
            int rc = end_copy(d);
            if (rc == 0 && !d->trailer_seen)
                return fail(d, "the COPY stream ended before its trailer");
            return rc;
        }
        if (n == -2) {
            remember_copy_error(d, NULL);
            d->finished = 1;
            return -3;
        }
        if (d->trailer_seen) {
            pq.freemem(message); /* nothing may follow the trailer but the end */
            continue;
        }
        size_t used = 0;
        int rc = 0;
        if (d->carry.len == d->carry_pos) {
            /* The usual case: one message holds whole rows; decode it in place. */
            d->carry.len = d->carry_pos = 0;
            rc = decode(d, message, (size_t)n, &used, max_rows, max_bytes, &bytes);
        }
        if (rc >= 0 && used < (size_t)n) {
            if (d->carry_pos > 0) {
                memmove(d->carry.data, d->carry.data + d->carry_pos, d->carry.len - d->carry_pos);
                d->carry.len -= d->carry_pos;
                d->carry_pos = 0;
            }
            if (buf_reserve(&d->carry, n - used)) {
                pq.freemem(message);
                return fail(d, "out of memory");
            }
            memcpy(d->carry.data + d->carry.len, message + used, n - used);
            d->carry.len += n - used;
        }
        pq.freemem(message);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return 0;
    }
}

static void reset_columns(Decoder *d)
{
    for (int i = 0; i < d->ncols; i++) {
        Column *c = &d->cols[i];
        c->values.len = c->validity.len = c->nulls = 0;
        c->offsets.len = 0;
        if (c->kind == K_STRING || c->kind == K_BINARY) {
            int32_t zero = 0;
            buf_reserve(&c->offsets, 4);
            memcpy(c->offsets.data, &zero, 4);
            c->offsets.len = 4;
        }
    }
    d->rows = 0;
}

/* A copy of the buffer in memory from `allocate(size)` (pyarrow's pool, whose pages stay
 * warm between batches; a fresh malloc of megabytes faults in new pages each time). */
static PyObject *copy_of(Buf *b, PyObject *allocate)
{
    PyObject *target = PyObject_CallFunction(allocate, "n", (Py_ssize_t)b->len);
    if (!target)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(target, &view, PyBUF_WRITABLE) < 0) {
        Py_DECREF(target);
        return NULL;
    }
    if ((size_t)view.len < b->len) {
        PyBuffer_Release(&view);
        Py_DECREF(target);
        return PyErr_Format(PyExc_ValueError, "allocate() gave a buffer too small");
    }
    if (b->len)
        memcpy(view.buf, b->data, b->len);
    PyBuffer_Release(&view);
    return target;
}

/* [(validity or None, values, offsets or None, null count)] per column */
static PyObject *batch_of(Decoder *d, PyObject *allocate)
{
    PyObject *columns = PyList_New(d->ncols);
    if (!columns)
        return NULL;
    for (int i = 0; i < d->ncols; i++) {
        Column *c = &d->cols[i];
        PyObject *validity =
            c->nulls ? copy_of(&c->validity, allocate) : (Py_INCREF(Py_None), Py_None);
        PyObject *values = copy_of(&c->values, allocate);
        PyObject *offsets =
            c->offsets.len ? copy_of(&c->offsets, allocate) : (Py_INCREF(Py_None), Py_None);
        PyObject *item = (validity && values && offsets)
                             ? Py_BuildValue("(NNNL)", validity, values, offsets, (long long)c->nulls)
                             : NULL;
        if (!item) {
            Py_XDECREF(validity);
            Py_XDECREF(values);
            Py_XDECREF(offsets);
            Py_DECREF(columns);
            return NULL;
        }
        PyList_SET_ITEM(columns, i, item);
    }
    return columns;
}

static int load_libpq(const char *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) {
        PyErr_Format(PyExc_ImportError, "libpq is not loaded from %s", path);
        return -1;
    }
#define LOAD(field, name)                                                          \
    if (!(*(void **)&pq.field = dlsym(lib, name))) {                               \
        PyErr_Format(PyExc_ImportError, "libpq at %s has no %s", path, name);      \
        return -1;                                                                 \
    }
    LOAD(exec, "PQexec");
    LOAD(result_status, "PQresultStatus");
    LOAD(get_copy_data, "PQgetCopyData");
    LOAD(freemem, "PQfreemem");
    LOAD(get_result, "PQgetResult");
    LOAD(result_error_field, "PQresultErrorField");
    LOAD(result_error_message, "PQresultErrorMessage");
    LOAD(clear, "PQclear");
    LOAD(error_message, "PQerrorMessage");
    LOAD(cmd_tuples, "PQcmdTuples");
#undef LOAD
    return 0;
}

static int Decoder_init(Decoder *d, PyObject *args, PyObject *kwargs)
{
    const char *libpq;
    unsigned long long conn;
    PyObject *columns;
    static char *names[] = {"libpq", "pgconn", "columns", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sKO", names, &libpq, &conn, &columns))
        return -1;
    if (!pq.exec && load_libpq(libpq))
        return -1;
    PyObject *seq = PySequence_Fast(columns, "columns must be a sequence of (kind, precision, scale)");
    if (!seq)
        return -1;
    d->ncols = (int)PySequence_Fast_GET_SIZE(seq);
    d->cols = calloc(d->ncols ? d->ncols : 1, sizeof(Column));
    if (!d->cols) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    static const int widths[] = {0, 0, 2, 4, 8, 8, 4, 8, 4, 8, 8, 16, 0, 0, 16};
    for (int i = 0; i < d->ncols; i++) {
        Column *c = &d->cols[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iii", &c->kind, &c->precision,
                              &c->scale)) {
            Py_DECREF(seq);
            return -1;
        }
        if (c->kind < K_BOOL || c->kind > K_UUID || (c->kind == K_DECIMAL && c->precision > 38)) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "column %d: unsupported kind", i);
            return -1;
        }
        c->width = widths[c->kind];
    }
    Py_DECREF(seq);
    d->conn = (PGconn *)(uintptr_t)conn;
    d->sent = -1;
    reset_columns(d);
    return 0;
}

static void Decoder_dealloc(Decoder *d)
{
    for (int i = 0; d->cols && i < d->ncols; i++) {
        buf_free(&d->cols[i].values);
        buf_free(&d->cols[i].offsets);
        buf_free(&d->cols[i].validity);
    }
    free(d->cols);
    buf_free(&d->carry);
    free(d->copy_error_state);
    free(d->copy_error_message);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyObject *raise_copy_error(Decoder *d)
{
    PyObject *state = d->copy_error_state ? PyUnicode_FromString(d->copy_error_state)
                                          : (Py_INCREF(Py_None), Py_None);
    PyObject *message = PyUnicode_DecodeUTF8(d->copy_error_message,
                                             (Py_ssize_t)strlen(d->copy_error_message), "replace");
    if (state && message)
        PyErr_SetObject(CopyFailed, Py_BuildValue("(NN)", state, message));
    else {
        Py_XDECREF(state);
        Py_XDECREF(message);
    }
    return NULL;
}

static PyObject *Decoder_start(Decoder *d, PyObject *args)
{
    const char *statement;
    if (!PyArg_ParseTuple(args, "s", &statement))
        return NULL;
    PGresult *result;
    Py_BEGIN_ALLOW_THREADS
    result = pq.exec(d->conn, statement);
    Py_END_ALLOW_THREADS
    if (result && pq.result_status(result) == PGRES_COPY_OUT) {
        pq.clear(result);
        Py_RETURN_NONE;
    }
    remember_copy_error(d, result);
    if (result)
        pq.clear(result);
    d->finished = 1;
    return raise_copy_error(d);
}

/* The next batch of at most max_rows rows (and about max_bytes), or None at the end;
 * its buffers come from allocate(size). */
static PyObject *Decoder_read(Decoder *d, PyObject *args)
{
    long long max_rows;
    Py_ssize_t max_bytes;
    PyObject *allocate;
    if (!PyArg_ParseTuple(args, "LnO", &max_rows, &max_bytes, &allocate))
        return NULL;
    if (d->finished && d->rows == 0)
        Py_RETURN_NONE;
    int rc = 0;
    if (!d->finished) {
        Py_BEGIN_ALLOW_THREADS
        rc = fill(d, max_rows, (size_t)max_bytes);
        Py_END_ALLOW_THREADS
    }
    if (rc == -1)
        return PyErr_Format(CopyFailed, "%s", d->fail_reason), NULL;
    if (rc == -2) {
        PyObject *reason = PyUnicode_FromString(d->fail_reason);
        if (reason)
            PyErr_SetObject(DoesNotFit, Py_BuildValue("(iN)", d->fail_column, reason));
        return NULL;
    }
    if (rc == -3)
        return raise_copy_error(d);
    if (d->rows == 0)
        Py_RETURN_NONE;
    PyObject *columns = batch_of(d, allocate);
    long long rows = d->rows;
    reset_columns(d);
    if (!columns)
        return NULL;
    return Py_BuildValue("(NL)", columns, rows);
}

/* The rows the server reported having sent, once the COPY ended well; None before. */
static PyObject *Decoder_sent(Decoder *d, PyObject *Py_UNUSED(ignored))
{
    if (d->sent < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(d->sent);
}

static PyMethodDef Decoder_methods[] = {
    {"start", (PyCFunction)Decoder_start, METH_VARARGS, "Send the COPY statement."},
    {"read", (PyCFunction)Decoder_read, METH_VARARGS,
     "read(max_rows, max_bytes, allocate) -> ([(validity, values, offsets, nulls)], rows) or None"},
    {"sent", (PyCFunction)Decoder_sent, METH_NOARGS,
     "sent() -> the rows the server's COPY reported sending, or None before it ended well"},
    {NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "adu_pgcopy.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
    .tp_doc = "Decoder(libpq, pgconn, columns): a binary COPY read into Arrow buffers.",
};

/* ---- The other way: Arrow buffers to COPY ... FROM STDIN (FORMAT binary) rows ---------- */

typedef struct {
    int kind, scale, large;     /* large: 64-bit string offsets */
    int64_t offset;             /* the array's offset, in values (and validity bits) */
    Py_buffer validity, values, offsets;
    int has_validity, has_offsets;
} Source;

static inline char *put16(char *o, uint16_t v) { o[0] = (char)(v >> 8); o[1] = (char)v; return o + 2; }
static inline char *put32(char *o, uint32_t v)
{
    o[0] = (char)(v >> 24); o[1] = (char)(v >> 16); o[2] = (char)(v >> 8); o[3] = (char)v;
    return o + 4;
}
static inline char *put64(char *o, uint64_t v) { return put32(put32(o, (uint32_t)(v >> 32)), (uint32_t)v); }

static inline int64_t string_bound(const Source *s, int64_t row)
{
    const char *offsets = s->offsets.buf;
    if (s->large) {
        int64_t v;
        memcpy(&v, offsets + 8 * (s->offset + row), 8);
        return v;
    }
    int32_t v;
    memcpy(&v, offsets + 4 * (s->offset + row), 4);
    return v;
}

/* A numeric's base-10000 digits, the most we write for a decimal128: 10 whole, 10 fraction. */
#define NUMERIC_MAX_DIGITS 20

/*
 * A decimal128's unscaled integer at scale `scale` as numeric's binary form: ndigits,
 * weight, sign, dscale, then the base-10000 digits with the decimal point between two of
 * them, no leading or trailing zero digits (numeric_recv would strip them too).
 */
static char *put_numeric(char *o, __int128 value, int scale)
{
    int negative = value < 0;
    unsigned __int128 magnitude = negative ? -(unsigned __int128)value : (unsigned __int128)value;
    unsigned __int128 whole = magnitude / (unsigned __int128)POW10[scale];
    unsigned __int128 fraction = magnitude % (unsigned __int128)POW10[scale];
    uint16_t digits[NUMERIC_MAX_DIGITS];
    int n = 0;
    uint16_t whole_digits[NUMERIC_MAX_DIGITS];
    int nwhole = 0;
    while (whole) {
        whole_digits[nwhole++] = (uint16_t)(whole % 10000);
        whole /= 10000;
    }
    for (int i = nwhole - 1; i >= 0; i--)
        digits[n++] = whole_digits[i];
    /* The fraction's digits, the last padded to a whole base-10000 digit: 0.5 is 5000. */
    int fraction_digits = (scale + 3) / 4, pad = 4 * fraction_digits - scale;
    for (int i = fraction_digits - 1; i >= 0; i--) {
        int taken = i == fraction_digits - 1 ? 4 - pad : 4;
        digits[n + i] = (uint16_t)(fraction % (unsigned __int128)POW10[taken]) *
                        (i == fraction_digits - 1 ? (uint16_t)POW10[pad] : 1);
        fraction /= (unsigned __int128)POW10[taken];
    }
    n += fraction_digits;
    int weight = nwhole - 1;
    int first = 0, last = n;
    while (first < last && digits[first] == 0) {
        first++;
        weight--;
    }
    while (last > first && digits[last - 1] == 0)
        last--;
    if (first == last)
        weight = 0;  /* zero: no digits */
    o = put16(o, (uint16_t)(last - first));
    o = put16(o, (uint16_t)(int16_t)weight);
    o = put16(o, first == last ? 0 : negative ? 0x4000 : 0x0000);
    o = put16(o, (uint16_t)scale);
    for (int i = first; i < last; i++)
        o = put16(o, digits[i]);
    return o;
}

static inline int is_valid(const Source *s, int64_t row)
{
    if (!s->has_validity)
        return 1;
    int64_t bit = s->offset + row;
    return ((const uint8_t *)s->validity.buf)[bit / 8] >> (bit % 8) & 1;
}

static const int WIDTH[] = {
    [K_BOOL] = 1, [K_INT16] = 2, [K_INT32] = 4, [K_INT64] = 8, [K_OID] = 4, [K_FLOAT32] = 4,
    [K_FLOAT64] = 8, [K_DATE] = 4, [K_TIMESTAMP] = 8, [K_TIME] = 8, [K_UUID] = 16,
    [K_DECIMAL] = 8 + 2 * NUMERIC_MAX_DIGITS,
};

/* The rows' bytes at o (room enough: see encode); returns the end. With the GIL released. */
static char *encode_rows(char *o, const Source *sources, int ncols, int64_t rows)
{
    for (int64_t row = 0; row < rows; row++) {
        o = put16(o, (uint16_t)ncols);
        for (int i = 0; i < ncols; i++) {
            const Source *s = &sources[i];
            if (!is_valid(s, row)) {
                o = put32(o, 0xFFFFFFFFu);
                continue;
            }
            int64_t at = s->offset + row;
            const char *v = s->values.buf;
            switch (s->kind) {
            case K_BOOL:
                o = put32(o, 1);
                *o++ = (char)(((const uint8_t *)v)[at / 8] >> (at % 8) & 1);
                break;
            case K_INT16: {
                uint16_t x;
                memcpy(&x, v + 2 * at, 2);
                o = put16(put32(o, 2), x);
                break;
            }
            case K_INT32:
            case K_FLOAT32:
            case K_DATE: {
                uint32_t x;
                memcpy(&x, v + 4 * at, 4);
                if (s->kind == K_DATE)
                    x = (uint32_t)((int32_t)x - PG_EPOCH_DAYS);
                o = put32(put32(o, 4), x);
                break;
            }
            case K_OID: {  /* held as int64 */
                int64_t x;
                memcpy(&x, v + 8 * at, 8);
                o = put32(put32(o, 4), (uint32_t)x);
                break;
            }
            case K_INT64:
            case K_FLOAT64:
            case K_TIME:
            case K_TIMESTAMP: {
                uint64_t x;
                memcpy(&x, v + 8 * at, 8);
                if (s->kind == K_TIMESTAMP)
                    x = (uint64_t)((int64_t)x - PG_EPOCH_US);
                o = put64(put32(o, 8), x);
                break;
            }
            case K_DECIMAL: {
                __int128 x;
                memcpy(&x, v + 16 * at, 16);
                char *start = o + 4;
                char *end = put_numeric(start, x, s->scale);
                put32(o, (uint32_t)(end - start));
                o = end;
                break;
            }
            case K_UUID:
                o = put32(o, 16);
                memcpy(o, v + 16 * at, 16);
                o += 16;
                break;
            default: {  /* K_STRING, K_BINARY */
                int64_t from = string_bound(s, row), to = string_bound(s, row + 1);
                o = put32(o, (uint32_t)(to - from));
                memcpy(o, v + from, (size_t)(to - from));
                o += to - from;
            }
            }
        }
    }
    return o;
}

static void release_sources(Source *sources, int n)
{
    for (int i = 0; i < n; i++) {
        if (sources[i].has_validity)
            PyBuffer_Release(&sources[i].validity);
        if (sources[i].values.obj)
            PyBuffer_Release(&sources[i].values);
        if (sources[i].has_offsets)
            PyBuffer_Release(&sources[i].offsets);
    }
    free(sources);
}

/*
 * encode(columns, rows) -> bytes: the rows of a batch as binary COPY rows (no header or
 * trailer). Each column is (kind, scale, offset, validity, values, offsets, large): its
 * Arrow buffers (validity and offsets may be None).
 */
static PyObject *encode(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *columns;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &columns, &rows))
        return NULL;
    int ncols = (int)PyList_GET_SIZE(columns);
    Source *sources = calloc(ncols ? ncols : 1, sizeof(Source));
    if (!sources)
        return PyErr_NoMemory();
    size_t bound = 2 * (size_t)rows;
    for (int i = 0; i < ncols; i++) {
        Source *s = &sources[i];
        PyObject *validity, *values, *offsets;
        long long offset;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(columns, i), "iiLOOOp", &s->kind, &s->scale,
                              &offset, &validity, &values, &offsets, &s->large))
            goto failed;
        s->offset = offset;
        if (s->kind < K_BOOL || s->kind > K_UUID || s->scale < 0 || s->scale > 38) {
            PyErr_SetString(PyExc_ValueError, "unknown column kind or scale");
            goto failed;
        }
        if (PyObject_GetBuffer(values, &s->values, PyBUF_SIMPLE))
            goto failed;
        if (validity != Py_None) {
            if (PyObject_GetBuffer(validity, &s->validity, PyBUF_SIMPLE))
                goto failed;
            s->has_validity = 1;
            if ((size_t)s->validity.len * 8 < (size_t)(s->offset + rows)) {
                PyErr_SetString(PyExc_ValueError, "validity buffer too short");
                goto failed;
            }
        }
        if (s->kind == K_STRING || s->kind == K_BINARY) {
            if (offsets == Py_None) {
                PyErr_SetString(PyExc_ValueError, "a string column needs its offsets");
                goto failed;
            }
            if (PyObject_GetBuffer(offsets, &s->offsets, PyBUF_SIMPLE))
                goto failed;
            s->has_offsets = 1;
            size_t width = s->large ? 8 : 4;
            if ((size_t)s->offsets.len < width * (size_t)(s->offset + rows + 1)) {
                PyErr_SetString(PyExc_ValueError, "offsets buffer too short");
                goto failed;
            }
            int64_t first = rows ? string_bound(s, 0) : 0, last = rows ? string_bound(s, rows) : 0;
            if (first < 0 || last < first || (size_t)last > (size_t)s->values.len) {
                PyErr_SetString(PyExc_ValueError, "offsets outside the values buffer");
                goto failed;
            }
            for (Py_ssize_t row = 0; row < rows; row++)  /* each value fits a 32-bit length */
                if (string_bound(s, row + 1) - string_bound(s, row) > INT32_MAX ||
                    string_bound(s, row + 1) < string_bound(s, row)) {
                    PyErr_SetString(PyExc_ValueError, "a value too long for COPY");
                    goto failed;
                }
            bound += 4 * (size_t)rows + (size_t)(last - first);
        } else {
            size_t item = s->kind == K_BOOL ? 0 : s->kind == K_DECIMAL ? 16 : s->kind == K_OID ? 8
                                                                         : (size_t)WIDTH[s->kind];
            size_t need = s->kind == K_BOOL ? (size_t)(s->offset + rows + 7) / 8
                                            : item * (size_t)(s->offset + rows);
            if ((size_t)s->values.len < need) {
                PyErr_SetString(PyExc_ValueError, "values buffer too short");
                goto failed;
            }
            bound += (4 + (size_t)WIDTH[s->kind]) * (size_t)rows;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (!out)
        goto failed;
    char *start = PyBytes_AS_STRING(out), *end;
    Py_BEGIN_ALLOW_THREADS
    end = encode_rows(start, sources, ncols, rows);
    Py_END_ALLOW_THREADS
    release_sources(sources, ncols);
    if (_PyBytes_Resize(&out, end - start))
        return NULL;
    return out;
failed:
    release_sources(sources, ncols);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode([(kind, scale, offset, validity, values, offsets, large)], rows) -> bytes"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "adu_pgcopy", "Binary COPY to and from Arrow buffers.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit_adu_pgcopy(void)
{
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    POW10[0] = 1;
    for (int i = 1; i < 39; i++)
        POW10[i] = POW10[i - 1] * 10;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    CopyFailed = PyErr_NewException("adu_pgcopy.CopyFailed", NULL, NULL);
    DoesNotFit = PyErr_NewException("adu_pgcopy.DoesNotFit", NULL, NULL);
    Py_INCREF(&DecoderType);
    PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType);
    PyModule_AddObject(m, "CopyFailed", CopyFailed);
    PyModule_AddObject(m, "DoesNotFit", DoesNotFit);
    PyModule_AddIntConstant(m, "BOOL", K_BOOL);
    PyModule_AddIntConstant(m, "INT16", K_INT16);
    PyModule_AddIntConstant(m, "INT32", K_INT32);
    PyModule_AddIntConstant(m, "INT64", K_INT64);
    PyModule_AddIntConstant(m, "OID", K_OID);
    PyModule_AddIntConstant(m, "FLOAT32", K_FLOAT32);
    PyModule_AddIntConstant(m, "FLOAT64", K_FLOAT64);
    PyModule_AddIntConstant(m, "DATE", K_DATE);
    PyModule_AddIntConstant(m, "TIMESTAMP", K_TIMESTAMP);
    PyModule_AddIntConstant(m, "TIME", K_TIME);
    PyModule_AddIntConstant(m, "DECIMAL", K_DECIMAL);
    PyModule_AddIntConstant(m, "STRING", K_STRING);
    PyModule_AddIntConstant(m, "BINARY", K_BINARY);
    PyModule_AddIntConstant(m, "UUID", K_UUID);
    return m;
}
