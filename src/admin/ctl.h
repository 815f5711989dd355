// `cutover ctl`: the admin API from the terminal, printed as readable tables.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace cutover::admin {

struct CtlTarget {
  std::string admin_url = "http://127.0.0.1:9090";
  std::string token;
};

// `breakers` lists every endpoint's breaker; `breaker PROVIDER ENDPOINT ACTION` applies
// force_open, disable or reset; `budgets` lists the retry budgets. `migrations`, `get NAME`,
// `history NAME` and `shadow NAME` show migrations; `pause|resume|promote|promote-full|rollback|
// abort NAME` and `set-weight NAME W` act on one, with the generation read just before. Returns
// the exit status.
int run_ctl(const CtlTarget& target, const std::vector<std::string>& words, std::ostream& out,
            std::ostream& error);

}  // namespace cutover::admin
