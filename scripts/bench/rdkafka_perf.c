/*
 * rdkafka_perf: producer and consumer throughput/latency benchmark for
 * Gregor, written against librdkafka's C API.
 *
 *   rdkafka_perf produce -b HOST:PORT -t TOPIC [-n RECORDS] [-s BYTES]
 *                [-a ACKS] [-l LINGER_MS] [-B BATCH_BYTES] [-M BATCH_RECORDS]
 *                [-z CODEC] [-r RECORDS_PER_S] [-p PARTITION] [-X key=value]...
 *   rdkafka_perf consume -b HOST:PORT -t TOPIC [-n RECORDS] [-X key=value]...
 *
 * produce sends RECORDS records of BYTES bytes (no key) and measures, for
 * every record, the time from handing it to librdkafka to its delivery
 * report. -p -1 (default) leaves the choice of partition to librdkafka's
 * partitioner; -r paces the sends to a target rate.
 *
 * consume reads RECORDS records from the beginning of every partition of
 * TOPIC (the simple consumer API, no group) as fast as it can.
 *
 * Both print one result line of key=value pairs starting with "RESULT",
 * for scripts, after a human-readable summary. Exit status 1 on any error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- time ---------------------------------------------------------- */

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
        struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                              .tv_nsec = (long)(t % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
               EINTR)
                ;
}

/* ---- latency histogram ---------------------------------------------
 * Log-linear buckets over microseconds: values below 64 µs are exact,
 * above that every power of two is split into 64 sub-buckets (≤ 1.6 %
 * relative error). Enough for avg/p50/p99/max of delivery latencies. */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define NBUCKETS (64 * SUB)

struct histo {
        uint64_t counts[NBUCKETS];
        uint64_t n;
        uint64_t sum_us;
        uint64_t max_us;
};

static unsigned bucket_of(uint64_t us) {
        if (us < SUB)
                return (unsigned)us;
        unsigned e = 63u - (unsigned)__builtin_clzll(us); /* e >= SUB_BITS */
        unsigned sub = (unsigned)(us >> (e - SUB_BITS)) & (SUB - 1);
        return (e - SUB_BITS + 1) * SUB + sub;
}

/* The largest value that falls into bucket b (the bucket's upper edge). */
static uint64_t bucket_top(unsigned b) {
        if (b < SUB)
                return b;
        unsigned e = b / SUB + SUB_BITS - 1;
        uint64_t sub = b % SUB;
        return ((SUB + sub + 1) << (e - SUB_BITS)) - 1;
}

static void histo_add(struct histo *h, uint64_t us) {
        h->counts[bucket_of(us)]++;
        h->n++;
        h->sum_us += us;
        if (us > h->max_us)
                h->max_us = us;
}

static double histo_pct_ms(const struct histo *h, double pct) {
        if (h->n == 0)
                return 0;
        uint64_t rank = (uint64_t)((double)h->n * pct / 100.0 + 0.5);
        if (rank < 1)
                rank = 1;
        uint64_t seen = 0;
        for (unsigned b = 0; b < NBUCKETS; b++) {
                seen += h->counts[b];
                if (seen >= rank) {
                        uint64_t top = bucket_top(b);
                        return (double)(top < h->max_us ? top : h->max_us) /
                               1000.0;
                }
        }
        return (double)h->max_us / 1000.0;
}

/* ---- shared state --------------------------------------------------- */

static struct histo lat;
static uint64_t delivered, failed, last_dr_ns;
static rd_kafka_resp_err_t first_err;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

static void die(const char *what, const char *detail) {
        fprintf(stderr, "rdkafka_perf: %s: %s\n", what, detail);
        exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v) {
        char err[512];
        if (rd_kafka_conf_set(conf, k, v, err, sizeof err) !=
            RD_KAFKA_CONF_OK)
                die(k, err);
}

static void set_kv(rd_kafka_conf_t *conf, const char *kv) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", kv);
        char *eq = strchr(buf, '=');
        if (!eq)
                die("-X expects key=value", kv);
        *eq = '\0';
        set(conf, buf, eq + 1);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
        (void)rk;
        (void)opaque;
        fprintf(stderr, "rdkafka_perf: client error %s: %s\n",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        if (err == RD_KAFKA_RESP_ERR__FATAL ||
            err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                stop = 1;
}

/* The send time travels as the message's opaque pointer. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
        (void)rk;
        (void)opaque;
        uint64_t t = now_ns();
        last_dr_ns = t;
        if (m->err) {
                if (failed++ == 0) {
                        first_err = m->err;
                        fprintf(stderr, "rdkafka_perf: delivery failed: %s\n",
                                rd_kafka_err2str(m->err));
                }
                return;
        }
        delivered++;
        uint64_t sent = (uint64_t)(uintptr_t)m->_private;
        histo_add(&lat, (t - sent) / 1000);
}

/* ---- options -------------------------------------------------------- */

struct opts {
        const char *brokers, *topic, *acks, *codec;
        long long records;
        int size, linger_ms, batch_bytes, batch_records, partition;
        double rate;
        const char *extra[32];
        int nextra;
};

static void usage(void) {
        fprintf(stderr,
                "usage: rdkafka_perf produce|consume -b BROKERS -t TOPIC "
                "[-n RECORDS] [-s BYTES] [-a ACKS] [-l LINGER_MS]\n"
                "       [-B BATCH_BYTES] [-M BATCH_RECORDS] [-z CODEC] "
                "[-r RECORDS_PER_S] [-p PARTITION] [-X key=value]...\n");
        exit(2);
}

static void parse(int argc, char **argv, struct opts *o) {
        *o = (struct opts){.acks = "1",
                           .codec = "none",
                           .records = 1000000,
                           .size = 100,
                           .linger_ms = 5,
                           .batch_bytes = 16384,
                           .batch_records = 10000,
                           .partition = RD_KAFKA_PARTITION_UA};
        int c;
        while ((c = getopt(argc, argv, "b:t:n:s:a:l:B:M:z:r:p:X:")) != -1) {
                switch (c) {
                case 'b': o->brokers = optarg; break;
                case 't': o->topic = optarg; break;
                case 'n': o->records = atoll(optarg); break;
                case 's': o->size = atoi(optarg); break;
                case 'a': o->acks = optarg; break;
                case 'l': o->linger_ms = atoi(optarg); break;
                case 'B': o->batch_bytes = atoi(optarg); break;
                case 'M': o->batch_records = atoi(optarg); break;
                case 'z': o->codec = optarg; break;
                case 'r': o->rate = atof(optarg); break;
                case 'p': o->partition = atoi(optarg); break;
                case 'X':
                        if (o->nextra == 32)
                                die("-X", "too many");
                        o->extra[o->nextra++] = optarg;
                        break;
                default: usage();
                }
        }
        if (!o->brokers || !o->topic || o->records < 1 || o->size < 0)
                usage();
}

static rd_kafka_conf_t *base_conf(const struct opts *o) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", o->brokers);
        set(conf, "client.id", "rdkafka_perf");
        rd_kafka_conf_set_error_cb(conf, on_error);
        return conf;
}

/* -X settings go last so that they override the defaults above. */
static void apply_extra(rd_kafka_conf_t *conf, const struct opts *o) {
        for (int i = 0; i < o->nextra; i++)
                set_kv(conf, o->extra[i]);
}

/* ---- produce -------------------------------------------------------- */

static int produce(const struct opts *o) {
        char num[32];
        rd_kafka_conf_t *conf = base_conf(o);
        set(conf, "acks", o->acks);
        snprintf(num, sizeof num, "%d", o->linger_ms);
        set(conf, "linger.ms", num);
        snprintf(num, sizeof num, "%d", o->batch_bytes);
        set(conf, "batch.size", num);
        snprintf(num, sizeof num, "%d", o->batch_records);
        set(conf, "batch.num.messages", num);
        set(conf, "compression.codec", o->codec);
        /* Room for a full second of records in flight in librdkafka. */
        set(conf, "queue.buffering.max.messages", "2000000");
        set(conf, "queue.buffering.max.kbytes", "2097151");
        /* A message.max.bytes below batch.size would cap the batches. */
        snprintf(num, sizeof num, "%d",
                 o->batch_bytes > 1000000 ? o->batch_bytes + 4096 : 1000000);
        set(conf, "message.max.bytes", num);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        apply_extra(conf, o);

        char err[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk)
                die("rd_kafka_new", err);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);

        char *payload = malloc((size_t)o->size + 1);
        for (int i = 0; i < o->size; i++)
                payload[i] = (char)('a' + i % 26);

        /* Warm-up: one record through metadata, connection setup and the
         * first produce round trip, outside the measurement. */
        if (rd_kafka_produce(rkt, o->partition, RD_KAFKA_MSG_F_COPY, payload,
                             (size_t)o->size, NULL, 0,
                             (void *)(uintptr_t)now_ns()) == -1)
                die("produce", rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_flush(rk, 30000);
        if (failed)
                die("warm-up", rd_kafka_err2str(first_err));
        memset(&lat, 0, sizeof lat);
        delivered = 0;

        uint64_t start = now_ns();
        double ns_per_record = o->rate > 0 ? 1e9 / o->rate : 0;
        uint64_t queue_full = 0;
        for (long long i = 0; i < o->records && !stop; i++) {
                if (ns_per_record > 0) {
                        uint64_t due = start + (uint64_t)((double)i *
                                                          ns_per_record);
                        if (now_ns() < due) {
                                rd_kafka_poll(rk, 0);
                                sleep_until(due);
                        }
                }
                for (;;) {
                        void *sent = (void *)(uintptr_t)now_ns();
                        if (rd_kafka_produce(rkt, o->partition,
                                             RD_KAFKA_MSG_F_COPY, payload,
                                             (size_t)o->size, NULL, 0,
                                             sent) == 0)
                                break;
                        rd_kafka_resp_err_t e = rd_kafka_last_error();
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                die("produce", rd_kafka_err2str(e));
                        queue_full++;
                        rd_kafka_poll(rk, 1);
                }
                if ((i & 1023) == 0)
                        rd_kafka_poll(rk, 0);
        }
        while (rd_kafka_outq_len(rk) > 0 && !stop)
                rd_kafka_poll(rk, 10);
        rd_kafka_poll(rk, 0);

        double secs = (double)(last_dr_ns - start) / 1e9;
        double rps = (double)delivered / secs;
        double mbps = (double)delivered * o->size / secs / 1e6;
        printf("produced %" PRIu64 " records of %d bytes in %.2f s: "
               "%.0f records/s, %.1f MB/s; latency ms avg %.2f p50 %.2f "
               "p99 %.2f max %.2f; %" PRIu64 " failed, %" PRIu64
               " queue-full waits\n",
               delivered, o->size, secs, rps, mbps,
               lat.n ? (double)lat.sum_us / (double)lat.n / 1000.0 : 0.0,
               histo_pct_ms(&lat, 50), histo_pct_ms(&lat, 99),
               (double)lat.max_us / 1000.0, failed, queue_full);
        printf("RESULT mode=produce records=%" PRIu64 " size=%d secs=%.3f "
               "rps=%.0f mbps=%.1f avg_ms=%.2f p50_ms=%.2f p99_ms=%.2f "
               "max_ms=%.2f failed=%" PRIu64 "\n",
               delivered, o->size, secs, rps, mbps,
               lat.n ? (double)lat.sum_us / (double)lat.n / 1000.0 : 0.0,
               histo_pct_ms(&lat, 50), histo_pct_ms(&lat, 99),
               (double)lat.max_us / 1000.0, failed);
        free(payload);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return failed || stop || delivered != (uint64_t)o->records ? 1 : 0;
}

/* ---- consume -------------------------------------------------------- */

static int consume(const struct opts *o) {
        rd_kafka_conf_t *conf = base_conf(o);
        /* Keep plenty prefetched so the application never waits on fetch
         * round trips it could have overlapped. */
        set(conf, "queued.min.messages", "1000000");
        set(conf, "fetch.max.bytes", "52428800");
        set(conf, "fetch.message.max.bytes", "8388608");
        apply_extra(conf, o);
        char err[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
        if (!rk)
                die("rd_kafka_new", err);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);

        const struct rd_kafka_metadata *md;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (e)
                die("metadata", rd_kafka_err2str(e));
        if (md->topic_cnt != 1 || md->topics[0].err)
                die("metadata", "topic not found");
        int parts = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);

        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        uint64_t start = now_ns();
        for (int p = 0; p < parts; p++)
                if (rd_kafka_consume_start_queue(rkt, p,
                                                 RD_KAFKA_OFFSET_BEGINNING,
                                                 q) == -1)
                        die("consume_start",
                            rd_kafka_err2str(rd_kafka_last_error()));

        rd_kafka_message_t *batch[10000];
        uint64_t records = 0, bytes = 0, first_ns = 0, idle_since = now_ns();
        int rc = 0;
        while (records < (uint64_t)o->records && !stop) {
                ssize_t n =
                    rd_kafka_consume_batch_queue(q, 1000, batch, 10000);
                if (n < 0)
                        die("consume", rd_kafka_err2str(rd_kafka_last_error()));
                if (n == 0 && now_ns() - idle_since > 30000000000ull) {
                        fprintf(stderr, "rdkafka_perf: no records for 30 s\n");
                        rc = 1;
                        break;
                }
                for (ssize_t i = 0; i < n; i++) {
                        rd_kafka_message_t *m = batch[i];
                        if (m->err) {
                                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                        fprintf(stderr,
                                                "rdkafka_perf: %s\n",
                                                rd_kafka_message_errstr(m));
                                        rc = 1;
                                        stop = 1;
                                }
                        } else {
                                if (!first_ns)
                                        first_ns = now_ns();
                                records++;
                                bytes += m->len + m->key_len;
                        }
                        rd_kafka_message_destroy(m);
                }
                if (n > 0)
                        idle_since = now_ns();
        }
        uint64_t end = now_ns();
        for (int p = 0; p < parts; p++)
                rd_kafka_consume_stop(rkt, p);
        double secs = (double)(end - start) / 1e9;
        /* The steady rate counts from the first record, leaving out the
         * start-up (metadata, offset lookup, first fetch). */
        double steady = first_ns && end > first_ns
                            ? (double)(end - first_ns) / 1e9
                            : secs;
        double first_ms =
            first_ns ? (double)(first_ns - start) / 1e6 : 0.0;
        printf("consumed %" PRIu64 " records (%" PRIu64
               " key+value bytes) from %d partitions in %.2f s: %.0f "
               "records/s, %.1f MB/s; first record after %.1f ms, "
               "%.0f records/s and %.1f MB/s from then on\n",
               records, bytes, parts, secs, (double)records / secs,
               (double)bytes / secs / 1e6, first_ms,
               (double)records / steady, (double)bytes / steady / 1e6);
        printf("RESULT mode=consume records=%" PRIu64 " secs=%.3f rps=%.0f "
               "mbps=%.1f first_ms=%.1f steady_rps=%.0f steady_mbps=%.1f\n",
               records, secs, (double)records / secs,
               (double)bytes / secs / 1e6, first_ms,
               (double)records / steady, (double)bytes / steady / 1e6);
        rd_kafka_queue_destroy(q);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return rc || records < (uint64_t)o->records;
}

int main(int argc, char **argv) {
        if (argc < 2)
                usage();
        const char *mode = argv[1];
        struct opts o;
        parse(argc - 1, argv + 1, &o);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        if (strcmp(mode, "produce") == 0)
                return produce(&o);
        if (strcmp(mode, "consume") == 0)
                return consume(&o);
        usage();
        return 2;
}
