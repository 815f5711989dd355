// A connection's read buffer, lent by its thread while bytes wait in it.
//
// A connection that keeps its own buffer between requests keeps it cold: under a few hundred
// concurrent connections each request reads into, and parses from, lines that the other
// connections' requests pushed out of the core's cache since (bench/RESULTS.md, twentieth
// session: on a shared VM a proxied request's CPU time at times rose by almost half from 32 to
// 256 connections with the same instructions). nginx allocates a connection's buffer when its bytes arrive and frees it when it is
// empty; here a buffer is taken from the thread's spares when a read is about to fill it (after
// the socket reported bytes to read, where the caller can wait for that) and given back once
// every byte in it was consumed, so the few buffers in use at any time are the ones the thread
// touched last. One thread: the connection's.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <cstddef>
#include <memory>

namespace cutover::http {

class LentReadBuffer {
 public:
  LentReadBuffer() = default;
  ~LentReadBuffer() { give_back(); }
  LentReadBuffer(const LentReadBuffer&) = delete;
  LentReadBuffer& operator=(const LentReadBuffer&) = delete;

  // The buffer, taken from this thread's spares (or made) when none is held.
  boost::beast::flat_buffer& get();
  // Whether a buffer is held: a read is under way into it, or bytes wait in it.
  bool held() const { return buffer_ != nullptr; }
  // Whether bytes wait in the buffer.
  bool has_bytes() const { return buffer_ && buffer_->size() > 0; }
  // Gives the buffer back to this thread's spares unless bytes wait in it. A buffer grown past
  // kMaxSpareCapacity (a large body) is freed instead of kept.
  void give_back_if_empty() {
    if (buffer_ && buffer_->size() == 0) give_back();
  }

  static constexpr std::size_t kMaxSpareCapacity = 16 * 1024;
  // How many empty buffers a thread keeps at most.
  static constexpr std::size_t kMaxSpares = 64;
  // The spares this thread keeps now (for tests).
  static std::size_t spares_on_this_thread();

 private:
  // Returns an empty buffer to the spares, frees one that holds bytes.
  void give_back();

  std::unique_ptr<boost::beast::flat_buffer> buffer_;
};

}  // namespace cutover::http
