// A message's header as bytes, written by Beast's own serializer, so that the header and the body
// leave in one gather write of two plain buffers. Beast's async_write walks its serializer's
// concatenated buffer views on every write (their iterators stood high in the profiles); a header
// copied out once costs one pass over its fields.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http.hpp>
#include <string>

namespace cutover::http {

// Appends `message`'s start line and fields, with the blank line that ends them, to `out`;
// false (with `out` holding what was written) if Beast's serializer reports an error.
template <bool isRequest, class Body, class Fields>
bool append_header(const boost::beast::http::message<isRequest, Body, Fields>& message,
                   std::string& out) {
  boost::beast::http::serializer<isRequest, Body, Fields> serializer{message};
  serializer.split(true);
  boost::system::error_code ec;
  while (!ec && !serializer.is_header_done()) {
    serializer.next(ec, [&](boost::system::error_code&, const auto& buffers) {
      const auto size = boost::beast::buffer_bytes(buffers);
      const auto offset = out.size();
      out.resize(offset + size);
      boost::asio::buffer_copy(boost::asio::buffer(out.data() + offset, size), buffers);
      serializer.consume(size);
    });
  }
  return !ec;
}

}  // namespace cutover::http
