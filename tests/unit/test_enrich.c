/* The enrichment step's pieces: option validation and redaction, prompt rendering, the request
 * (URL and body) and reply parsing for both API shapes, and the call loop's degradation paths.
 * The Ollama shape (POST /api/chat, stream false, reply message.content) is only covered here:
 * the integration test's llama-server speaks the OpenAI shape alone. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "collections/enrich.h"

static embd_enrich_cfg *parse(const char *text, char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    embd_enrich_cfg *c = embd_enrich_parse(j, err, errlen);
    json_decref(j);
    return c;
}

static void test_parse_defaults_and_redaction(void **state) {
    (void)state;
    char err[256] = "";
    embd_enrich_cfg *c = parse("{\"endpoints\": [{\"url\": \"http://127.0.0.1:8080/\", \"model\": \"m\"},"
                               " {\"url\": \"https://h.example/base\", \"api\": \"ollama\", \"model\": \"llama3\","
                               " \"api_key\": \"k-123\"}]}",
                               err, sizeof err);
    assert_non_null(c);
    assert_int_equal(c->n_ep, 2);
    assert_string_equal(c->ep[0].url, "http://127.0.0.1:8080"); /* trailing slash dropped */
    assert_int_equal(c->ep[0].api, EMBD_ENRICH_OPENAI);
    assert_null(c->ep[0].api_key);
    assert_int_equal(c->ep[1].api, EMBD_ENRICH_OLLAMA);
    assert_string_equal(c->ep[1].api_key, "k-123");
    assert_int_equal(c->max_tokens, 128);
    assert_int_equal(c->concurrency, 4);
    assert_int_equal(c->timeout_ms, 30000);
    assert_int_equal(c->retries, 2);
    assert_int_equal(c->document_bytes, 8000);
    assert_string_equal(c->prompt, EMBD_ENRICH_DEFAULT_PROMPT);

    json_t *full = embd_enrich_json(c, false), *red = embd_enrich_json(c, true);
    char *fs = json_dumps(full, JSON_COMPACT), *rs = json_dumps(red, JSON_COMPACT);
    assert_non_null(strstr(fs, "k-123"));
    assert_null(strstr(rs, "k-123"));
    assert_null(strstr(rs, "api_key\""));
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(red, "endpoints"), 1), "api_key_set")));
    assert_true(json_is_false(json_object_get(json_array_get(json_object_get(red, "endpoints"), 0), "api_key_set")));
    /* the stored form parses back to the same configuration */
    embd_enrich_cfg *again = embd_enrich_parse(full, err, sizeof err);
    assert_non_null(again);
    json_t *full2 = embd_enrich_json(again, false);
    assert_true(json_equal(full, full2));
    json_decref(full2);
    embd_enrich_free(again);
    free(fs), free(rs);
    json_decref(full), json_decref(red);
    embd_enrich_free(c);
}

static void test_parse_errors(void **state) {
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"endpoints\": []}", "enrich.endpoints"},
        {"{\"endpoints\": [{\"url\": \"file:///etc/passwd\", \"model\": \"m\"}]}", "http:// or https://"},
        {"{\"endpoints\": [{\"url\": \"http://\", \"model\": \"m\"}]}", "http:// or https://"},
        {"{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"\"}]}", "model"},
        {"{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"m\", \"api_key\": \"a\\nb\"}]}", "api_key"},
        {"{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"m\"}], \"retries\": 11}", "enrich.retries"},
        {"{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"m\"}], \"timeout_ms\": 1.5}", "enrich.timeout_ms"},
        {"{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"m\"}], \"prompt\": \"{{chunk}} {{chunk\"}", "unknown placeholder"},
        {"{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"m\"}], \"prompt\": \"{{document}}\"}", "{{chunk}}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        embd_enrich_cfg *c = parse(cases[i].json, err, sizeof err);
        if (c || !strstr(err, cases[i].want)) fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].want);
    }
    char err[256] = "";
    json_t *s = json_string("x");
    assert_null(embd_enrich_parse(s, err, sizeof err));
    assert_non_null(strstr(err, "must be an object"));
    json_decref(s);
}

static void test_prompt(void **state) {
    (void)state;
    char err[256];
    embd_enrich_cfg *c = parse("{\"endpoints\": [{\"url\": \"http://h\", \"model\": \"m\"}], \"document_bytes\": 5,"
                               " \"prompt\": \"[{{id}}|{{title}}] {{document}} / {{chunk}}{{chunk}}\"}",
                               err, sizeof err);
    assert_non_null(c);
    const char *doc = "ab\xc3\xa9\xc3\xa9xyz"; /* a, b, e-acute, e-acute, ...: byte 5 is inside a character */
    embd_enrich_item it = {"CH", 2, doc, strlen(doc), "doc-1", "The Title"};
    char *p = embd_enrich_prompt(c, &it);
    assert_string_equal(p, "[doc-1|The Title] ab\xc3\xa9 / CHCH"); /* cut before the split character */
    free(p);
    it.title = NULL; /* no title: the id stands in */
    p = embd_enrich_prompt(c, &it);
    assert_string_equal(p, "[doc-1|doc-1] ab\xc3\xa9 / CHCH");
    free(p);
    embd_enrich_free(c);
}

static void test_requests(void **state) {
    (void)state;
    char err[256];
    embd_enrich_cfg *c = parse("{\"endpoints\": [{\"url\": \"http://a:1/\", \"model\": \"gpt\"},"
                               " {\"url\": \"http://b:2\", \"api\": \"ollama\", \"model\": \"llama3\"}], \"max_tokens\": 7}",
                               err, sizeof err);
    assert_non_null(c);
    char *u0 = embd_enrich_url(&c->ep[0]), *u1 = embd_enrich_url(&c->ep[1]);
    assert_string_equal(u0, "http://a:1/v1/chat/completions");
    assert_string_equal(u1, "http://b:2/api/chat");
    free(u0), free(u1);

    char *b = embd_enrich_body(c, &c->ep[0], "say \"hi\"\n");
    json_t *j = json_loads(b, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt");
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 7);
    assert_true(json_is_false(json_object_get(j, "stream")));
    json_t *m = json_array_get(json_object_get(j, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "role")), "user");
    assert_string_equal(json_string_value(json_object_get(m, "content")), "say \"hi\"\n");
    json_decref(j);
    free(b);

    b = embd_enrich_body(c, &c->ep[1], "p");
    j = json_loads(b, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "llama3");
    assert_true(json_is_false(json_object_get(j, "stream"))); /* Ollama streams unless told not to */
    assert_null(json_object_get(j, "max_tokens"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "options"), "num_predict")), 7);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content")), "p");
    json_decref(j);
    free(b);
    embd_enrich_free(c);
}

static void test_replies(void **state) {
    (void)state;
    char *t = NULL, err[256];
    const char *openai = "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
                         "{\"role\":\"assistant\",\"content\":\"  The context.\\n\"},\"finish_reason\":\"stop\"}]}";
    /* an Ollama /api/chat reply with stream false (as its API documentation shows it) */
    const char *ollama = "{\"model\":\"llama3.2\",\"created_at\":\"2023-12-12T14:13:43.416799Z\",\"message\":"
                         "{\"role\":\"assistant\",\"content\":\"Ollama context\"},\"done\":true,\"total_duration\":5191566416}";
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OPENAI, openai, strlen(openai), &t, err, sizeof err), 0);
    assert_string_equal(t, "The context."); /* trimmed */
    free(t);
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OLLAMA, ollama, strlen(ollama), &t, err, sizeof err), 0);
    assert_string_equal(t, "Ollama context");
    free(t);
    /* each parser refuses the other's shape, empty text, and what is not JSON */
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OPENAI, ollama, strlen(ollama), &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "choices[0].message.content"));
    assert_null(t);
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OLLAMA, openai, strlen(openai), &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "message.content"));
    const char *empty = "{\"message\":{\"content\":\" \\n \"}}";
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OLLAMA, empty, strlen(empty), &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OPENAI, "<html>", 6, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "not JSON"));
    const char *nul = "{\"message\":{\"content\":\"a\\u0000b\"}}";
    assert_int_equal(embd_enrich_reply(EMBD_ENRICH_OLLAMA, nul, strlen(nul), &t, err, sizeof err), -1);
}

/* A port on 127.0.0.1 where nothing listens (connections are refused). */
static int refused_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &l), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void test_run_degrades(void **state) {
    (void)state;
    char text[512], err[256];
    int p = refused_port();
    snprintf(text, sizeof text,
             "{\"endpoints\": [{\"url\": \"http://127.0.0.1:%d\", \"model\": \"m\"}, {\"url\": \"http://127.0.0.1:%d\","
             " \"api\": \"ollama\", \"model\": \"m\"}], \"retries\": 2, \"timeout_ms\": 500, \"concurrency\": 2}",
             p, p);
    embd_enrich_cfg *c = parse(text, err, sizeof err);
    assert_non_null(c);
    embd_enrich_item items[3];
    for (int i = 0; i < 3; i++) items[i] = (embd_enrich_item){"chunk", 5, "doc", 3, "id", NULL};
    char *ctx[3];
    size_t per[2] = {0};
    embd_enrich_stats st = {.per_endpoint = per};
    assert_int_equal(embd_enrich_run(c, items, 3, NULL, ctx, &st, err, sizeof err), 0);
    /* refused every time: 3 tries each (retries with backoff), then the plain chunk */
    assert_int_equal(st.degraded, 3);
    assert_int_equal(st.enriched, 0);
    assert_int_equal(st.calls, 9);
    assert_int_equal(st.retries, 6);
    assert_int_equal(per[0] + per[1], 9);
    assert_true(per[0] >= 4 && per[1] >= 4); /* round-robin over both */
    assert_non_null(strstr(st.last_error, "127.0.0.1"));
    for (int i = 0; i < 3; i++) assert_null(ctx[i]);

    /* past the deadline, or stopped: no call at all */
    embd_enrich_stats st2 = {0};
    embd_enrich_run_opts o = {.deadline = 1e-9};
    assert_int_equal(embd_enrich_run(c, items, 3, &o, ctx, &st2, err, sizeof err), 0);
    assert_int_equal(st2.calls, 0);
    assert_int_equal(st2.degraded, 3);
    atomic_int stop = 1;
    embd_enrich_stats st3 = {0};
    embd_enrich_run_opts o3 = {.stop = &stop};
    assert_int_equal(embd_enrich_run(c, items, 3, &o3, ctx, &st3, err, sizeof err), 0);
    assert_int_equal(st3.calls, 0);
    assert_int_equal(st3.degraded, 3);
    embd_enrich_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_defaults_and_redaction), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_prompt),     cmocka_unit_test(test_requests),
        cmocka_unit_test(test_replies),    cmocka_unit_test(test_run_degrades),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
