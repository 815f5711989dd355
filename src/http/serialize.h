// A message's header as bytes, so that the header and the body leave in one gather write of two
// plain buffers. Written straight from the message's fields: Beast's own serializer walks
// concatenated buffer views of the start line and every field (their iterators stood high in
// the profiles, about 5,000 instructions a header), where the header is a few short appends.
// The bytes are those Beast's serializer writes, which a unit test checks for every shape the
// gateway sends.
#pragma once

#include <boost/beast/http.hpp>
#include <string>

namespace cutover::http {

namespace detail {
inline void append_version(unsigned version, std::string& out) {
  out.append("HTTP/");
  out.push_back(static_cast<char>('0' + version / 10 % 10));
  out.push_back('.');
  out.push_back(static_cast<char>('0' + version % 10));
}
}  // namespace detail

// Appends `message`'s start line and fields, with the blank line that ends them, to `out`.
template <bool isRequest, class Body, class Fields>
void append_header(const boost::beast::http::message<isRequest, Body, Fields>& message,
                   std::string& out) {
  if constexpr (isRequest) {
    const auto method = message.method_string();
    const auto target = message.target();
    out.append(method.data(), method.size()).push_back(' ');
    out.append(target.data(), target.size()).push_back(' ');
    detail::append_version(message.version(), out);
  } else {
    detail::append_version(message.version(), out);
    const unsigned status = message.result_int();
    const char code[] = {' ', static_cast<char>('0' + status / 100 % 10),
                         static_cast<char>('0' + status / 10 % 10),
                         static_cast<char>('0' + status % 10), ' '};
    out.append(code, sizeof code);
    auto reason = message.reason();
    if (reason.empty()) reason = boost::beast::http::obsolete_reason(message.result());
    out.append(reason.data(), reason.size());
  }
  out.append("\r\n");
  for (const auto& field : message) {
    const auto name = field.name_string();
    const auto value = field.value();
    out.append(name.data(), name.size()).append(": ");
    out.append(value.data(), value.size()).append("\r\n");
  }
  out.append("\r\n");
}

}  // namespace cutover::http
