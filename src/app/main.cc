// The `cutover` binary: wiring of the subcommands onto the libraries under src/.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <csignal>
#include <iostream>

#include "admin/ctl.h"
#include "config/config.h"
#include "runtime/gateway_server.h"
#include "simulate/fake_provider.h"

namespace {

namespace asio = boost::asio;
using namespace cutover;

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("cutover");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
}

std::shared_ptr<const config::Config> load_or_report(const std::string& path) {
  auto loaded = config::load_from_file(path, config::process_environment());
  for (const auto& error : loaded.errors) std::cerr << "config error: " << error << "\n";
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
  if (!config) {
    std::cerr << "refusing to start: fix the configuration errors above\n";
    return 2;
  }
  if (check_only) {
    std::cout << config_path << ": OK (" << config->providers.size() << " providers, "
              << config->routes.size() << " routed models)\n";
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
  spdlog::info("listening on {}:{} with {} workers", config->listen.address, server->port(),
               server->worker_count());
  if (config->admin) {
    spdlog::info("admin API on {}:{}", config->admin->listen.address, server->admin_port());
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
  spdlog::info("simulated provider '{}' listening on {}:{}", profile->name, address,
               provider.port());
  wait_for_signals([] {});
  return 0;
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
  auto* provider_command =
      simulate_command->add_subcommand("provider", "serve a simulated OpenAI-compatible provider");
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
                               "mean time to the first byte in milliseconds");

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

  app.add_subcommand("version", "print the version")->callback([] {
    std::cout << "cutover 0.1.0\n";
  });

  CLI11_PARSE(app, argc, argv);
  if (serve_command->parsed()) return serve(config_path, check_config);
  if (provider_command->parsed()) return simulate_provider(address, port, profile, threads, key_env, overrides);
  if (ctl_command->parsed()) {
    const char* token = std::getenv(ctl_token_env.c_str());
    if (token == nullptr || *token == '\0') {
      std::cerr << "environment variable " << ctl_token_env << " (the admin token) is not set\n";
      return 2;
    }
    ctl_target.token = token;
    return admin::run_ctl(ctl_target, ctl_words, std::cout, std::cerr);
  }
  return 0;
}
