// The `cutover` binary: wiring of the subcommands onto the libraries under src/.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <malloc.h>
#ifdef CUTOVER_WITH_MIMALLOC
#include <mimalloc.h>
#endif
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "admin/ctl.h"
#include "report/report.h"
#include "config/config.h"
#include "runtime/gateway_server.h"
#include "simulate/fake_provider.h"
#include "simulate/traffic.h"
#include "store/state_store.h"

namespace {

namespace asio = boost::asio;
using namespace cutover;

// The allocator this binary was linked with (see CUTOVER_MIMALLOC in CMakeLists.txt), and
// whether malloc itself is that allocator's: linking mimalloc replaces malloc only when the
// dynamic linker finds its malloc first.
std::string allocator_name() {
#ifdef CUTOVER_WITH_MIMALLOC
  const int version = mi_version();
  void* probe = std::malloc(16);
  const bool replaces_malloc = mi_is_in_heap_region(probe);
  std::free(probe);
  return fmt::format("mimalloc {}.{}.{}{}", version / 100, version / 10 % 10, version % 10,
                     replaces_malloc ? "" : ", linked but not in place of malloc");
#else
  return "glibc malloc";
#endif
}

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("cutover");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
}

std::shared_ptr<const config::Config> load_or_report(const std::string& path) {
  auto loaded = config::load_from_file(path, config::process_environment());
  for (const auto& error : loaded.errors) std::cerr << "config error: " << error << "\n";
  for (const auto& warning : loaded.warnings) spdlog::warn("config: {}", warning);
  return loaded.config;
}

// Blocks until SIGINT or SIGTERM; SIGHUP calls `on_reload`.
void wait_for_signals(const std::function<void()>& on_reload) {
  asio::io_context signals_context(1);
  asio::signal_set signals(signals_context, SIGINT, SIGTERM, SIGHUP);
  std::function<void(boost::system::error_code, int)> on_signal =
      [&](boost::system::error_code ec, int number) {
        if (ec) return;
        if (number == SIGHUP) {
          on_reload();
          signals.async_wait(on_signal);
          return;
        }
        spdlog::info("received {}, draining", number == SIGTERM ? "SIGTERM" : "SIGINT");
      };
  signals.async_wait(on_signal);
  signals_context.run();
}

int serve(const std::string& config_path, bool check_only) {
  auto config = load_or_report(config_path);
  if (config && config->uses_state_store_file()) {
    if (auto problem = store::sqlite_store_problem(config->state_store)) {
      std::cerr << "config error: state_store: cannot use '" << config->state_store
                << "': " << *problem << "\n";
      config = nullptr;
    }
  }
  if (!config) {
    std::cerr << "refusing to start: fix the configuration errors above\n";
    return 2;
  }
  if (check_only) {
    std::cout << config_path << ": OK (" << config->providers.size() << " providers, "
              << config->routes.size() << " routed models)\n";
    if (config->redis) {
      // Checked for form only: serve starts (failing static) even while Redis is unreachable.
      std::cout << "state store: " << config->redis->display_url << ", keys {"
                << config->redis->key_prefix << "}:*, replica " << config->redis->replica
                << "; shadow pairs and usage in " << config->state_store << "\n";
    }
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // Each request allocates and frees a few kilobytes of coroutine frames and JSON; glibc's
  // default would keep trimming and re-growing the heap around them (madvise on the hot path,
  // about 10 % of throughput in bench/). Memory freed stays for reuse instead.
  mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
  mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
  std::unique_ptr<runtime::GatewayServer> server;
  try {
    server = std::make_unique<runtime::GatewayServer>(config);
  } catch (const std::exception& e) {
    spdlog::error("cannot start: {}", e.what());
    return 1;
  }
  server->start();
  spdlog::info("listening on {}:{} with {} workers ({})", config->listen.address, server->port(),
               server->worker_count(), allocator_name());
  if (config->admin) {
    spdlog::info("admin API on {}:{}", config->admin->listen.address, server->admin_port());
  }
  if (config->redis) {
    spdlog::info("fleet mode: state store {} (keys {{{}}}:*), replica {}",
                 config->redis->display_url, config->redis->key_prefix, config->redis->replica);
  }
  auto drain_timeout = config->drain_timeout;
  wait_for_signals([&] {
    auto fresh = load_or_report(config_path);
    if (!fresh) {
      spdlog::error("reload refused; the running configuration stays in force");
      return;
    }
    if (auto error = server->reload(fresh)) {
      spdlog::error("reload refused: {}", *error);
      return;
    }
    drain_timeout = fresh->drain_timeout;
    spdlog::info("configuration reloaded from {}", config_path);
  });
  server->shutdown(drain_timeout);
  spdlog::info("stopped");
  return 0;
}

struct ProfileOverrides {
  std::optional<double> error_rate;
  std::optional<double> rate_limit_rate;
  std::optional<unsigned> latency_ms;
  std::optional<unsigned> jitter_ms;
  std::string distribution;
  std::vector<std::string> models;
  std::string dialect;
  std::int64_t quota_requests = 0;
};

int simulate_provider(const std::string& address, std::uint16_t port, const std::string& profile_name,
                      unsigned threads, const std::string& key_env, const ProfileOverrides& overrides) {
  auto profile = simulate::profile_named(profile_name);
  if (!profile) {
    std::string names;
    for (const auto& name : simulate::profile_names()) names += " " + name;
    std::cerr << "unknown profile '" << profile_name << "'; known:" << names << "\n";
    return 2;
  }
  if (overrides.error_rate) profile->error_rate = *overrides.error_rate;
  if (overrides.rate_limit_rate) profile->rate_limit_rate = *overrides.rate_limit_rate;
  if (overrides.latency_ms) profile->latency = std::chrono::milliseconds(*overrides.latency_ms);
  if (overrides.jitter_ms) profile->jitter = std::chrono::milliseconds(*overrides.jitter_ms);
  if (overrides.distribution == "lognormal") {
    profile->distribution = simulate::Profile::Distribution::lognormal;
  } else if (overrides.distribution == "uniform") {
    profile->distribution = simulate::Profile::Distribution::uniform;
  }
  if (!overrides.models.empty()) profile->models = overrides.models;
  profile->quota_requests = overrides.quota_requests;
  if (!overrides.dialect.empty()) {
    const auto dialect = simulate::dialect_named(overrides.dialect);
    if (!dialect) {
      std::cerr << "unknown dialect '" << overrides.dialect << "'; known: openai anthropic\n";
      return 2;
    }
    profile->dialect = *dialect;
  }
  if (!key_env.empty()) {
    const char* key = std::getenv(key_env.c_str());
    if (key == nullptr || *key == '\0') {
      std::cerr << "environment variable " << key_env << " is not set\n";
      return 2;
    }
    profile->required_key = key;
  }
  std::signal(SIGPIPE, SIG_IGN);
  simulate::FakeProvider provider(simulate::profile_script(*profile), port, address, nullptr,
                                  threads);
  spdlog::info("simulated {} provider '{}' listening on {}:{}",
               simulate::dialect_name(profile->dialect), profile->name, address, provider.port());
  wait_for_signals([] {});
  provider.drain(std::chrono::seconds(2));
  return 0;
}

// Client load through a gateway until the duration or request count (or SIGINT/SIGTERM: a first
// one lets requests in flight finish, a second abandons them). Progress goes to stderr, the
// summary as one JSON line to stdout.
int simulate_traffic(simulate::TrafficOptions options, const std::string& key_env,
                     const std::string& duration, bool quiet, bool fail_on_error) {
  if (!key_env.empty()) {
    const char* key = std::getenv(key_env.c_str());
    if (key == nullptr || *key == '\0') {
      std::cerr << "environment variable " << key_env << " is not set\n";
      return 2;
    }
    options.api_key = key;
  }
  if (!duration.empty()) {
    options.duration = simulate::parse_duration(duration);
    if (!options.duration) {
      std::cerr << "--duration '" << duration << "' is not a duration such as 30s or 2m\n";
      return 2;
    }
  }
  if (auto problem = simulate::validate(options)) {
    std::cerr << *problem << "\n";
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // On a terminal the line redraws in place; in a log it is one line per second.
  const bool terminal = isatty(STDERR_FILENO) == 1;
  bool drawn = false;
  simulate::TrafficGenerator::ProgressSink progress;
  if (!quiet) {
    progress = [&](const simulate::TrafficProgress& report) {
      std::cerr << (terminal ? "\rtraffic: " : "traffic: ") << report.line()
                << (terminal ? "\x1b[K" : "\n") << std::flush;
      drawn = true;
    };
  }
  simulate::TrafficGenerator generator(options, progress);
  asio::io_context signals_context(1);
  asio::signal_set signals(signals_context, SIGINT, SIGTERM);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec,
                                                                      int) {
    if (ec) return;
    generator.stop();
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  std::thread signal_thread([&] { signals_context.run(); });
  simulate::TrafficSummary summary;
  std::string fatal;
  try {
    summary = generator.run();
  } catch (const std::exception& e) {
    fatal = e.what();
  }
  signals_context.stop();
  signal_thread.join();
  if (terminal && drawn) std::cerr << "\n";
  if (!fatal.empty()) {
    std::cerr << "traffic: " << fatal << "\n";
    return 1;
  }
  std::cout << boost::json::serialize(summary.to_json()) << std::endl;
  if (summary.errors > 0) {
    std::cerr << "traffic: " << summary.errors
              << " client-visible errors; the first: " << summary.first_error << "\n";
  }
  return fail_on_error && summary.errors > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging();
  CLI::App app{"cutover: a gateway for moving LLM traffic between providers, safely"};
  app.require_subcommand(1);

  std::string config_path = "cutover.yaml";
  bool check_config = false;
  auto* serve_command = app.add_subcommand("serve", "run the gateway");
  serve_command->add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  serve_command->add_flag("--check-config", check_config, "validate the configuration and exit");

  auto* simulate_command = app.add_subcommand("simulate", "simulated providers and traffic");
  simulate_command->require_subcommand(1);
  std::string address = "127.0.0.1";
  std::uint16_t port = 9001;
  std::string profile = "healthy";
  unsigned threads = 1;
  std::string key_env;
  auto* provider_command = simulate_command->add_subcommand(
      "provider", "serve a simulated provider: OpenAI-compatible, or Anthropic Messages");
  provider_command->add_option("--address", address, "address to bind")->capture_default_str();
  provider_command->add_option("-p,--port", port, "port (0 picks a free one)")->capture_default_str();
  provider_command->add_option("--profile", profile,
                               "behaviour: healthy, fast, slow, flaky, ratelimited, relay")
      ->capture_default_str();
  provider_command->add_option("--threads", threads, "event-loop threads")->capture_default_str();
  provider_command->add_option("--api-key-env", key_env,
                               "require this environment variable's value as the API key");
  ProfileOverrides overrides;
  provider_command->add_option("--error-rate", overrides.error_rate,
                               "share of requests answered 500 (overrides the profile)")
      ->check(CLI::Range(0.0, 1.0));
  provider_command->add_option("--rate-limit-rate", overrides.rate_limit_rate,
                               "share of requests answered 429 with Retry-After")
      ->check(CLI::Range(0.0, 1.0));
  provider_command->add_option("--latency-ms", overrides.latency_ms,
                               "median time to the first byte in milliseconds");
  provider_command->add_option("--jitter-ms", overrides.jitter_ms,
                               "spread of that time: ± for uniform, the log-scale width for lognormal");
  provider_command->add_option("--latency-distribution", overrides.distribution,
                               "uniform (the default) or lognormal (a long tail)")
      ->check(CLI::IsMember({"uniform", "lognormal"}));
  provider_command->add_option("--models", overrides.models,
                               "the provider's own model names; others get 404 model_not_found")
      ->delimiter(',');
  provider_command->add_option("--dialect", overrides.dialect,
                               "the API served: openai (chat/completions, completions, "
                               "embeddings; the default) or anthropic (messages, "
                               "messages/count_tokens); the other's paths get 404");
  provider_command->add_option("--quota-requests", overrides.quota_requests,
                               "requests a minute to report as the quota in x-ratelimit-*-requests "
                               "headers (remaining falls with each request; the minute starts "
                               "with the first); beyond it, 429 with Retry-After until the reset")
      ->check(CLI::PositiveNumber);
  provider_command->footer(
      "Requests declaring tools get a call of the first tool; a tool result is answered \"Tool "
      "said: <its text>\". A prompt containing [simulate:STATUS] (say [simulate:429] or "
      "[simulate:529]) is answered that status with the dialect's error body.");

  simulate::TrafficOptions traffic;
  std::string traffic_key_env;
  std::string traffic_duration;
  bool traffic_quiet = false;
  bool traffic_fail_on_error = false;
  auto* traffic_command = simulate_command->add_subcommand(
      "traffic",
      "send client load through a gateway: many users, plain and streamed chat "
      "completions, a progress line on stderr and a JSON summary on stdout");
  std::vector<std::string> traffic_urls{traffic.url};
  traffic_command
      ->add_option("--url", traffic_urls,
                   "the gateway's base URL; repeat it for several gateways (a fleet's replicas): "
                   "the clients are spread over them")
      ->capture_default_str();
  traffic_command->add_option("--key-env", traffic_key_env,
                              "environment variable holding the client key for the gateway");
  traffic_command->add_option("--model", traffic.model, "the model clients ask for")
      ->capture_default_str();
  traffic_command
      ->add_option("--api", traffic.api,
                   "the clients' API: chat (OpenAI chat completions) or messages (Anthropic)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, simulate::TrafficOptions::Api>{
              {"chat", simulate::TrafficOptions::Api::chat},
              {"messages", simulate::TrafficOptions::Api::messages}},
          CLI::ignore_case))
      ->default_str("chat");
  traffic_command->add_option("--users", traffic.users, "distinct users (x-user-id and `user`)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  traffic_command
      ->add_option("--concurrency", traffic.concurrency,
                   "connections, each with one request in flight")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  traffic_command->add_option("--rate", traffic.rate, "requests per second; 0: as fast as possible")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  traffic_command->add_option("--duration", traffic_duration,
                              "stop after this long (30s, 2m); with neither this nor "
                              "--requests, runs until interrupted");
  traffic_command->add_option("--requests", traffic.requests, "stop after this many requests");
  traffic_command->add_option("--stream-share", traffic.stream_share, "share of streamed requests")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  traffic_command->add_option("--seed", traffic.seed, "random seed (0: a random one)");
  traffic_command->add_flag("--quiet", traffic_quiet, "no progress line");
  traffic_command->add_flag("--fail-on-error", traffic_fail_on_error,
                            "exit 1 when any client-visible error happened");

  admin::CtlTarget ctl_target;
  std::string ctl_token_env = "CUTOVER_ADMIN_TOKEN";
  std::vector<std::string> ctl_words;
  auto* ctl_command = app.add_subcommand(
      "ctl", "operate a running gateway through its admin API: migrations | get NAME | "
             "history NAME | shadow NAME | pause|resume|promote|promote-full|rollback|abort NAME | "
             "set-weight NAME W | breakers | breaker PROVIDER ENDPOINT force_open|disable|reset | "
             "budgets");
  ctl_command->add_option("--admin-url", ctl_target.admin_url, "the admin listener")
      ->capture_default_str();
  ctl_command->add_option("--token-env", ctl_token_env,
                          "environment variable holding the admin token")
      ->capture_default_str();
  ctl_command->add_option("words", ctl_words, "what to show or do")->required();

  auto* report_command = app.add_subcommand("report", "figures from the state store, offline");
  report_command->require_subcommand(1);
  std::string report_config;
  std::vector<std::string> report_stores;
  std::string report_from, report_to, report_by = "provider,model", report_format;
  std::string report_migration_name;
  auto* usage_command = report_command->add_subcommand(
      "usage", "usage and cost per provider, model or key, for reconciliation with invoices");
  auto* migration_report_command =
      report_command->add_subcommand("migration", "a migration's state, history, shadow comparison and projection");
  for (auto* command : {usage_command, migration_report_command}) {
    command->add_option("--config", report_config, "the gateway's configuration (names the state store)");
  }
  usage_command->add_option("--store", report_stores,
                            "a state store file instead of --config; repeat it with each replica's "
                            "local_file for a fleet's usage");
  migration_report_command->add_option("--store", report_stores,
                                       "the state store file (instead of --config)")
      ->expected(1);
  usage_command->add_option("--from", report_from, "start: 2026-11-01, 2026-11-01T10:00:00Z or epoch seconds");
  usage_command->add_option("--to", report_to, "end (exclusive), same forms; default now");
  usage_command->add_option("--by", report_by,
                            "group by any of provider,model,provider_model,key,traffic,minute,hour,day")
      ->capture_default_str();
  usage_command->add_option("--format", report_format, "csv (default) or json");
  migration_report_command->add_option("name", report_migration_name, "the migration")->required();
  migration_report_command->add_option("--format", report_format, "table (default) or json");

  app.add_subcommand("version", "print the version")->callback([] {
    std::cout << "cutover 0.1.0\n" << "allocator: " << allocator_name() << "\n";
  });

  CLI11_PARSE(app, argc, argv);
  if (serve_command->parsed()) return serve(config_path, check_config);
  if (provider_command->parsed()) return simulate_provider(address, port, profile, threads, key_env, overrides);
  if (traffic_command->parsed()) {
    traffic.url = traffic_urls.front();
    traffic.more_urls.assign(traffic_urls.begin() + 1, traffic_urls.end());
    return simulate_traffic(traffic, traffic_key_env, traffic_duration, traffic_quiet,
                            traffic_fail_on_error);
  }
  if (ctl_command->parsed()) {
    const char* token = std::getenv(ctl_token_env.c_str());
    if (token == nullptr || *token == '\0') {
      std::cerr << "environment variable " << ctl_token_env << " (the admin token) is not set\n";
      return 2;
    }
    ctl_target.token = token;
    return admin::run_ctl(ctl_target, ctl_words, std::cout, std::cerr);
  }
  if (usage_command->parsed() || migration_report_command->parsed()) {
    std::shared_ptr<const config::Config> loaded;
    if (!report_config.empty()) {
      // Only the store's path, the migrations and the prices matter here: keys need not be set.
      auto result = config::load_from_file(report_config, config::process_environment(),
                                           config::Secrets::unresolved);
      for (const auto& error : result.errors) std::cerr << error << "\n";
      if (!result.config) return 2;
      loaded = result.config;
      if (report_stores.empty()) report_stores.push_back(loaded->state_store);
    }
    if (report_stores.empty()) {
      std::cerr << "cutover report: give --config FILE or --store PATH\n";
      return 2;
    }
    for (const auto& path : report_stores) {
      if (!std::filesystem::exists(path)) {
        std::cerr << "cutover report: no state store at " << path << "\n";
        return 1;
      }
    }
    try {
      if (usage_command->parsed()) {
        report::UsageOptions options;
        options.store_paths = report_stores;
        for (auto [text, target] : {std::pair{&report_from, &options.from_unix_ms},
                                    std::pair{&report_to, &options.to_unix_ms}}) {
          if (text->empty()) continue;
          *target = report::parse_time(*text);
          if (!*target) {
            std::cerr << "cutover report usage: '" << *text << "' is not a date or time\n";
            return 2;
          }
        }
        options.by.clear();
        std::stringstream dimensions(report_by);
        for (std::string by; std::getline(dimensions, by, ',');) {
          if (!by.empty()) options.by.push_back(by);
        }
        if (!report_format.empty()) options.format = report_format;
        return report::report_usage(options, std::cout, std::cerr);
      }
      report::MigrationReportOptions options;
      options.store_path = report_stores.front();
      if (loaded) options.redis = loaded->redis;
      options.migration = report_migration_name;
      if (!report_format.empty()) options.format = report_format;
      if (loaded) {
        for (const auto& migration : loaded->migrations) {
          if (migration.name != report_migration_name) continue;
          options.models = migration.models;
          const auto* candidate = loaded->find_provider(migration.candidate);
          if (const auto* price = candidate->price_for(candidate->models.at(migration.models.front()))) {
            options.currency = price->currency;
          }
        }
      }
      return report::report_migration(options, std::cout, std::cerr);
    } catch (const std::exception& e) {
      std::cerr << "cutover report: " << e.what() << "\n";
      return 1;
    }
  }
  return 0;
}
