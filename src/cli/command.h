// Subcommand registry for the `tenet` binary. Each part of tenet adds its subcommands from its own
// file under src/cli/ (cmd_<part>.cc), so parts do not edit main.cc:
//
//   namespace {
//   struct AttestArgs { std::string server; ... };
//   const tenet::cli::CommandRegistration kAttest([](CLI::App& app) {
//     auto args = std::make_shared<AttestArgs>();
//     CLI::App* cmd = app.add_subcommand("attest", "Verify an enclave's RA-TLS certificate ...");
//     cmd->add_option("server", args->server, "HOST:PORT")->required();
//     return tenet::cli::Command{cmd, [args] { return run_attest(*args); }};
//   });
//   }  // namespace
//
// The action returns the process exit status: 0 success, 2 bad input (tenet::cli::exit_code maps
// kInvalidArgument / kNotFound to 2), 1 other failures. Errors go to stderr via tenet::cli::fail.
#pragma once

#include <functional>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/status.h"

namespace tenet::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> action;
};

using CommandFactory = std::function<Command(CLI::App&)>;

// Registers at static-initialization time; main() builds every registered command.
struct CommandRegistration {
  explicit CommandRegistration(CommandFactory factory);
};

std::vector<CommandFactory>& registered_commands();

// Long-running commands (servers) stop on SIGINT/SIGTERM: block_stop_signals() blocks both in the
// calling thread, to be called before any thread starts (threads inherit the mask, so only
// wait_for_stop_signal() ever sees them), and ignores SIGPIPE (a client hanging up is an error on
// its socket, not the server's death). wait_for_stop_signal() returns the signal's number.
void block_stop_signals();
int wait_for_stop_signal();
// The life of a server command once it listens: prints `ready` (one JSON line) on stdout, waits
// for SIGINT/SIGTERM, runs `stop`, prints {"event":"stopped"}. Returns exit status 0.
int announce_and_serve(const std::string& ready_json, const std::function<void()>& stop);

// Prints "tenet: error: <status>" to stderr and returns the exit status for it.
int fail(const Status& status);

}  // namespace tenet::cli
