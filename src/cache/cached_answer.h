// One complete, successful answer as the response cache keeps it, in a process or in Redis.
#pragma once

#include <cstdint>
#include <string>

namespace cutover::cache {

struct CachedAnswer {
  std::string body;  // the plain JSON body, or the stream's SSE text including [DONE]
  bool stream = false;
  std::string provider;  // the one that answered first
  std::string provider_model;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double cost = 0;  // what that answer cost, which each hit saves
  std::string currency;
};

}  // namespace cutover::cache
