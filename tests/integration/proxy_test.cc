// The gateway core over real sockets: routing, credentials, keep-alive, streaming, bad input.
#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "gateway_fixture.h"

namespace cutover::testing {
namespace {

namespace json = boost::json;
using simulate::FakeReply;
using simulate::FakeRequest;

TEST_F(GatewayTest, ChatCompletionIsProxiedWithTheProvidersModelAndKey) {
  start(simulate::default_reply);
  auto reply = client().post("/v1/chat/completions", chat_body());
  ASSERT_EQ(reply.status, 200u) << reply.body;
  auto body = json::parse(reply.body);
  EXPECT_EQ(body.at("model"), "gpt-4");
  EXPECT_EQ(body.at("object"), "chat.completion");
  EXPECT_NE(std::string(body.at("choices").at(0).at("message").at("content").as_string())
                .find("hello there"),
            std::string::npos);
  EXPECT_EQ(reply.header("x-cutover-provider"), "primary");

  auto requests = upstream_->recorded_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/v1/chat/completions");
  EXPECT_EQ(requests[0].json.at("model"), "gpt-4.1");
  EXPECT_EQ(requests[0].header("authorization"), std::string("Bearer ") + kProviderKey);
  for (const auto& [name, value] : requests[0].headers) {
    EXPECT_EQ(value.find(kClientKey), std::string::npos) << "client key forwarded in " << name;
  }
}

TEST_F(GatewayTest, KeepAliveReusesOneUpstreamConnection) {
  start(simulate::default_reply);
  auto downstream = client();
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(downstream.post("/v1/chat/completions", chat_body()).status, 200u);
  }
  EXPECT_EQ(upstream_->requests_received(), 20u);
  EXPECT_EQ(upstream_->connections_accepted(), 1u);
}

TEST_F(GatewayTest, RequestIdIsPropagatedOrGenerated) {
  start(simulate::default_reply);
  auto downstream = client();
  auto given = downstream.request(http::verb::post, "/v1/chat/completions", chat_body(),
                                  {{"authorization", "Bearer client-secret"}, {"x-request-id", "trace-42"}});
  EXPECT_EQ(given.header("x-request-id"), "trace-42");
  EXPECT_EQ(upstream_->recorded_requests().at(0).header("x-request-id"), "trace-42");
  auto generated = downstream.post("/v1/chat/completions", chat_body());
  EXPECT_EQ(generated.header("x-request-id").rfind("req_", 0), 0u);
}

TEST_F(GatewayTest, ModelsListsRoutedModels) {
  start(simulate::default_reply);
  auto reply = client().request(http::verb::get, "/v1/models", "", {{"authorization", "Bearer client-secret"}});
  ASSERT_EQ(reply.status, 200u);
  auto body = json::parse(reply.body);
  std::set<std::string> ids;
  for (const auto& model : body.at("data").as_array()) ids.insert(std::string(model.at("id").as_string()));
  EXPECT_EQ(ids, (std::set<std::string>{"embed", "gpt-4"}));
}

TEST_F(GatewayTest, HealthAndReadinessAnswerWithoutAKey) {
  start(simulate::default_reply);
  auto downstream = client();
  EXPECT_EQ(downstream.request(http::verb::get, "/healthz").status, 200u);
  EXPECT_EQ(downstream.request(http::verb::get, "/readyz").status, 200u);
}

TEST_F(GatewayTest, EmbeddingsAndCompletionsAreProxied) {
  start(simulate::default_reply);
  auto downstream = client();
  auto embeddings = downstream.post("/v1/embeddings", R"({"model":"embed","input":"some text"})");
  ASSERT_EQ(embeddings.status, 200u) << embeddings.body;
  EXPECT_EQ(json::parse(embeddings.body).at("data").at(0).at("object"), "embedding");
  auto completion = downstream.post("/v1/completions", R"({"model":"gpt-4","prompt":"once upon"})");
  ASSERT_EQ(completion.status, 200u) << completion.body;
  EXPECT_EQ(json::parse(completion.body).at("object"), "text_completion");
  EXPECT_EQ(upstream_->recorded_requests().at(0).json.at("model"), "text-embedding-3-small");
}

TEST_F(GatewayTest, RelayQuirksAreNormalizedInPlainResponses) {
  start(reply_with([](FakeReply& reply) { reply.quirks = {true, true, true}; }));
  auto reply = client().post("/v1/chat/completions", chat_body());
  ASSERT_EQ(reply.status, 200u);
  auto body = json::parse(reply.body);
  EXPECT_EQ(body.at("choices").at(0).at("finish_reason"), "stop");
  EXPECT_TRUE(body.at("usage").as_object().contains("completion_tokens"));
  EXPECT_TRUE(body.at("id").is_string());
  EXPECT_TRUE(body.at("created").is_int64());
}

class CredentialsTest : public GatewayTest {};

TEST_F(CredentialsTest, MissingOrWrongClientKeyGets401) {
  start(simulate::default_reply);
  auto downstream = client();
  auto missing = downstream.request(http::verb::post, "/v1/chat/completions", chat_body());
  EXPECT_EQ(missing.status, 401u);
  auto wrong = downstream.post("/v1/chat/completions", chat_body(), "not-a-key");
  EXPECT_EQ(wrong.status, 401u);
  EXPECT_EQ(json::parse(wrong.body).at("error").at("code"), "invalid_api_key");
  EXPECT_EQ(upstream_->requests_received(), 0u);
}

TEST_F(CredentialsTest, KeysNeverAppearInLogsOrErrorBodies) {
  const auto log_path = std::filesystem::temp_directory_path() / ("cutover-access-" + std::to_string(::getpid()) + ".log");
  std::filesystem::remove(log_path);
  start(reply_with([](FakeReply& reply) {
          reply.status = 401;
          reply.body = std::string(R"({"error":{"message":"Incorrect API key provided: )") +
                       kProviderKey + R"("}})";
        }),
        GatewayOptions{.access_log = log_path.string()});
  auto downstream = client();
  auto reply = downstream.post("/v1/chat/completions", chat_body());
  EXPECT_EQ(reply.status, 401u);
  EXPECT_EQ(reply.body.find(kProviderKey), std::string::npos) << reply.body;
  EXPECT_EQ(reply.body.find(kClientKey), std::string::npos);
  server_->shutdown(std::chrono::milliseconds(100));
  std::ifstream in(log_path);
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("\"status\":401"), std::string::npos) << log;
  EXPECT_EQ(log.find(kProviderKey), std::string::npos);
  EXPECT_EQ(log.find(kClientKey), std::string::npos);
  std::filesystem::remove(log_path);
}

class BadInputTest : public GatewayTest {};

TEST_F(BadInputTest, EachMistakeGetsItsStatusAndAnOpenAiError) {
  start(simulate::default_reply);
  auto downstream = client();
  expect_openai_error(downstream.post("/v1/chat/completions", "{not json"), 400, "invalid_json");
  expect_openai_error(downstream.post("/v1/chat/completions", "[1]"), 400, "invalid_json");
  expect_openai_error(downstream.post("/v1/chat/completions", R"({"messages":[{"role":"user"}]})"), 400,
               "invalid_request");
  expect_openai_error(downstream.post("/v1/chat/completions", R"({"model":"gpt-4","messages":5})"), 400,
               "invalid_request");
  expect_openai_error(downstream.post("/v1/chat/completions", chat_body(false, "gpt-99")), 404,
               "model_not_found");
  expect_openai_error(downstream.post("/v1/nothing", chat_body()), 404, "unknown_url");
  expect_openai_error(downstream.request(http::verb::get, "/v1/chat/completions", "",
                                  {{"authorization", "Bearer client-secret"}}),
               405, "method_not_allowed");
  EXPECT_EQ(upstream_->requests_received(), 0u);
  // The connection survived every error: keep-alive is not broken by bad input.
  EXPECT_EQ(downstream.post("/v1/chat/completions", chat_body()).status, 200u);
}

TEST_F(BadInputTest, BodyOverTheLimitGets413) {
  start(simulate::default_reply, GatewayOptions{.top_extra = "limits: {max_body_bytes: 2048}\n"});
  auto reply = client().post("/v1/chat/completions", std::string(4096, 'x'));
  expect_openai_error(reply, 413, "request_too_large");
}

TEST_F(BadInputTest, HalfSentRequestTimesOutWith408) {
  start(simulate::default_reply, GatewayOptions{.top_extra = "limits: {request_timeout: 300ms}\n"});
  auto downstream = client();
  downstream.write_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo");
  auto answer = downstream.read_until_close();
  EXPECT_NE(answer.find("HTTP/1.1 408"), std::string::npos) << answer;
  EXPECT_NE(answer.find("request_timeout"), std::string::npos);
}

TEST_F(BadInputTest, GarbageInsteadOfHttpGets400) {
  start(simulate::default_reply);
  auto downstream = client();
  downstream.write_raw("\x01\x02 hello\r\n\r\n");
  auto answer = downstream.read_until_close();
  EXPECT_NE(answer.find("HTTP/1.1 400"), std::string::npos) << answer;
}

TEST_F(GatewayTest, StreamIsForwardedEventByEventWithUsageCapturedNotForwarded) {
  start(reply_with([](FakeReply& reply) { reply.event_interval = std::chrono::milliseconds(30); }));
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  std::size_t upstream_in_flight_at_first_piece = 0;
  bool first = true;
  auto reply = downstream.read_stream([&](std::string_view) {
    if (first) upstream_in_flight_at_first_piece = upstream_->requests_in_flight();
    first = false;
  });
  ASSERT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.header("content-type"), "text/event-stream");
  // The first piece reached the client while the provider was still streaming.
  EXPECT_EQ(upstream_in_flight_at_first_piece, 1u);
  auto events = data_events(reply.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (std::size_t i = 0; i + 1 < events.size(); ++i) {
    auto chunk = json::parse(events[i]);
    EXPECT_EQ(chunk.at("model"), "gpt-4");
    EXPECT_FALSE(chunk.as_object().contains("usage")) << events[i];
    if (auto* content = chunk.at("choices").at(0).at("delta").as_object().if_contains("content")) {
      text += content->as_string();
    }
  }
  EXPECT_NE(text.find("hello there"), std::string::npos);
  // The gateway asked the provider for usage on the client's behalf.
  EXPECT_EQ(upstream_->recorded_requests().at(0).json.at("stream_options").at("include_usage"), true);
}

TEST_F(GatewayTest, StreamUsageReachesTheClientThatAskedForIt) {
  start(simulate::default_reply);
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions",
                  R"({"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]})",
                  {{"authorization", "Bearer client-secret"}});
  auto events = data_events(downstream.read_stream().body);
  ASSERT_GE(events.size(), 2u);
  auto usage_chunk = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage_chunk.at("choices").as_array().empty());
  EXPECT_GT(usage_chunk.at("usage").at("completion_tokens").as_int64(), 0);
}

TEST_F(GatewayTest, StreamedRelayQuirksAreNormalized) {
  start(reply_with([](FakeReply& reply) { reply.quirks = {true, true, true}; }));
  auto downstream = client();
  downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                  {{"authorization", "Bearer client-secret"}});
  auto events = data_events(downstream.read_stream().body);
  ASSERT_GE(events.size(), 2u);
  std::set<std::string> ids;
  for (std::size_t i = 0; i + 1 < events.size(); ++i) {
    auto chunk = json::parse(events[i]);
    ids.insert(std::string(chunk.at("id").as_string()));
    EXPECT_EQ(chunk.at("object"), "chat.completion.chunk");
    EXPECT_TRUE(chunk.at("created").is_int64());
  }
  EXPECT_EQ(ids.size(), 1u) << "one id for the whole stream";
  auto last = json::parse(events[events.size() - 2]);
  EXPECT_EQ(last.at("choices").at(0).at("finish_reason"), "stop");
}

// A provider's streams after its first are forwarded from the bytes each read brought, chunk by
// chunk matched against the shapes earlier chunks left (providers::forward_kept_chunks): every
// chunk reaches the client as the provider sent it but for the model's name, the usage is recorded,
// whether the events came in one body or in pieces, with LF or CRLF line ends.
TEST_F(GatewayTest, RepeatedStreamsArriveAsTheProviderSentThem) {
  const auto chunk = [](std::string_view delta, std::string_view finish, std::string_view tail) {
    return R"({"id":"chatcmpl-R1","object":"chat.completion.chunk","created":1767225600,)"
           R"("model":"gpt-4.1","system_fingerprint":"fp_1","choices":[{"index":0,"delta":)" +
           std::string(delta) + R"(,"logprobs":null,"finish_reason":)" + std::string(finish) +
           "}]," + std::string(tail) + "}";
  };
  const std::vector<std::string> sent = {
      chunk(R"({"role":"assistant","content":""})", "null", R"("usage":null)"),
      chunk(R"({"content":"Hel"})", "null", R"("usage":null)"),
      chunk(R"({"content":"lo, \"w\u00f6rld\"\n"})", "null", R"("usage":null)"),
      chunk(R"({"content":"caf\u00e9 \ud83d\ude00"})", "null", R"("usage":null)"),
      chunk("{}", R"("stop")", R"("usage":null)"),
      R"({"id":"chatcmpl-R1","object":"chat.completion.chunk","created":1767225600,)"
      R"("model":"gpt-4.1","system_fingerprint":"fp_1","choices":[],)"
      R"("usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}})",
      "[DONE]"};
  struct Way {
    FakeReply::Framing framing;
    std::string line_end;
  };
  const std::vector<Way> ways = {
      {FakeReply::Framing::content_length, "\n"},  {FakeReply::Framing::chunked, "\n"},
      {FakeReply::Framing::content_length, "\n"},  {FakeReply::Framing::content_length, "\r\n"},
      {FakeReply::Framing::close_delimited, "\n"}, {FakeReply::Framing::content_length, "\n"}};
  std::atomic<std::size_t> way{0};
  const auto log_path = std::filesystem::temp_directory_path() /
                        ("cutover-repeated-streams-" + std::to_string(::getpid()) + ".log");
  std::filesystem::remove(log_path);
  start(reply_with([&](FakeReply& reply) {
          reply.events = sent;
          reply.framing = ways[way].framing;
          reply.line_end = ways[way].line_end;
        }),
        GatewayOptions{.access_log = log_path.string()});
  std::vector<std::string> expected;
  for (const auto& event : sent) {
    std::string renamed = event;
    if (const auto at = renamed.find(R"("model":"gpt-4.1")"); at != std::string::npos) {
      renamed.replace(at, 17, R"("model":"gpt-4")");
    }
    expected.push_back(renamed);
  }
  const std::string body =
      R"({"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},)"
      R"("messages":[{"role":"user","content":"hi"}]})";
  for (std::size_t i = 0; i < ways.size(); ++i) {
    way = i;
    auto downstream = client();
    downstream.send(http::verb::post, "/v1/chat/completions", body,
                    {{"authorization", "Bearer client-secret"}});
    const auto reply = downstream.read_stream();
    ASSERT_EQ(reply.status, 200u) << "stream " << i;
    EXPECT_EQ(data_events(reply.body), expected) << "stream " << i;
  }
  server_->shutdown(std::chrono::milliseconds(100));
  std::ifstream in(log_path);
  std::string line;
  std::size_t lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_NE(line.find(R"("prompt_tokens":11,"completion_tokens":7)"), std::string::npos) << line;
  }
  EXPECT_EQ(lines, ways.size());
  std::filesystem::remove(log_path);
}

TEST_F(GatewayTest, ClientDisconnectCancelsTheUpstreamStream) {
  start(reply_with([](FakeReply& reply) {
    reply.content = std::string(200, 'w');
    for (int i = 0; i < 100; ++i) reply.content += " word";
    reply.event_interval = std::chrono::milliseconds(50);
  }));
  {
    auto downstream = client();
    downstream.send(http::verb::post, "/v1/chat/completions", chat_body(true),
                    {{"authorization", "Bearer client-secret"}});
    http::response_parser<http::string_body> parser;
    beast::flat_buffer buffer;
    http::read_header(downstream.socket(), buffer, parser);
    ASSERT_EQ(upstream_->requests_in_flight(), 1u);
  }
  // The provider sees its connection closed long before its 5 s stream would have ended.
  EXPECT_TRUE(eventually([&] { return upstream_->requests_in_flight() == 0; },
                         std::chrono::seconds(3)));
  EXPECT_EQ(upstream_->requests_completed(), 0u);
}

TEST_F(GatewayTest, ClientDisconnectCancelsAPendingPlainRequest) {
  start(reply_with([](FakeReply& reply) { reply.delay = std::chrono::milliseconds(1500); }));
  {
    auto downstream = client();
    downstream.send(http::verb::post, "/v1/chat/completions", chat_body(),
                    {{"authorization", "Bearer client-secret"}});
    ASSERT_TRUE(eventually([&] { return upstream_->requests_in_flight() == 1; }));
  }
  // The gateway closed the provider connection: the delayed answer finds no one to write to.
  EXPECT_TRUE(eventually([&] { return upstream_->requests_in_flight() == 0; }));
  EXPECT_EQ(upstream_->requests_completed(), 0u);
}

}  // namespace
}  // namespace cutover::testing
