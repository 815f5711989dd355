#include "http/fields.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>

namespace cutover::http {
namespace {

namespace bhttp = boost::beast::http;

TEST(FieldValueTest, FindsTheFirstFieldByCodeAsOperatorBracketDoes) {
  bhttp::request<bhttp::string_body> message;
  message.insert("Authorization", "Bearer first");
  message.insert(bhttp::field::content_type, "application/json");
  message.insert("AUTHORIZATION", "Bearer second");
  EXPECT_EQ(field_value(message, bhttp::field::authorization), "Bearer first");
  EXPECT_EQ(field_value(message, bhttp::field::authorization),
            std::string_view(message[bhttp::field::authorization]));
  EXPECT_EQ(field_value(message, bhttp::field::content_type), "application/json");
  EXPECT_EQ(field_value(message, bhttp::field::cache_control), "");
}

TEST(FieldValueTest, FindsAFieldByNameInAnyCase) {
  bhttp::request<bhttp::string_body> message;
  message.insert("x-api-keys", "longer name");
  message.insert("x-api-ke", "shorter name");
  message.insert("X-Api-Key", "the key");
  message.insert("x-api-key", "a repeat");
  message.insert("Anthropic-Version", "2023-06-01");
  EXPECT_EQ(field_value(message, "x-api-key"), "the key");
  EXPECT_EQ(field_value(message, "x-api-key"), std::string_view(message["x-api-key"]));
  EXPECT_EQ(field_value(message, "anthropic-version"), "2023-06-01");
  EXPECT_EQ(field_value(message, "content-type"), "");
  // A known field asked for by its name is found too.
  message.insert(bhttp::field::cache_control, "no-cache");
  EXPECT_EQ(field_value(message, "Cache-Control"), "no-cache");
}

}  // namespace
}  // namespace cutover::http
