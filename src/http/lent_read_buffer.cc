#include "http/lent_read_buffer.h"

#include <vector>

namespace cutover::http {

namespace {

using Spares = std::vector<std::unique_ptr<boost::beast::flat_buffer>>;

// The pointer stays readable while the thread's other thread_local objects are destroyed (it is
// trivially destructible): a connection destroyed then frees its buffer instead of returning it.
thread_local Spares* spares = nullptr;

struct SparesOwner {
  Spares list;
  SparesOwner() { spares = &list; }
  ~SparesOwner() { spares = nullptr; }
};

Spares* this_thread_spares() {
  if (spares == nullptr) {
    thread_local SparesOwner owner;
  }
  return spares;
}

}  // namespace

boost::beast::flat_buffer& LentReadBuffer::get() {
  if (!buffer_) {
    Spares* list = this_thread_spares();
    if (list != nullptr && !list->empty()) {
      buffer_ = std::move(list->back());
      list->pop_back();
    } else {
      buffer_ = std::make_unique<boost::beast::flat_buffer>();
    }
  }
  return *buffer_;
}

void LentReadBuffer::give_back() {
  if (!buffer_) return;
  auto buffer = std::move(buffer_);
  if (buffer->size() > 0 || buffer->capacity() > kMaxSpareCapacity) return;
  Spares* list = spares;  // not made here: a thread that never lent a buffer keeps none
  if (list != nullptr && list->size() < kMaxSpares) list->push_back(std::move(buffer));
}

std::size_t LentReadBuffer::spares_on_this_thread() {
  return spares == nullptr ? 0 : spares->size();
}

}  // namespace cutover::http
