// kvtier: inspect and care for a kvtier block store (see docs/CLI.md).

#include <cstdio>
#include <functional>
#include <string>

#include "cli.h"

int main(int argc, char** argv) {
  using namespace kvtier::cli;

  CLI::App app{
      "kvtier: inspect and care for a kvtier block store (a RocksDB directory).\n"
      "Read-only commands (stats, ls, tree, show, verify, export) work while another\n"
      "process holds the store. Exit codes: 0 ok, 1 problems found, 2 usage or open error.",
      "kvtier"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the help of every command");

  CommonFlags flags;
  CommandRun run;
  RegisterInspectCommands(&app, &flags, &run);
  RegisterTreeCommand(&app, &flags, &run);
  RegisterShowCommand(&app, &flags, &run);
  RegisterVerifyCommand(&app, &flags, &run);
  RegisterMaintenanceCommands(&app, &flags, &run);
  RegisterArchiveCommands(&app, &flags, &run);

  // CLI11 would call a mistyped command a missing one; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    const CLI::App& const_app = app;
    auto all = std::function<bool(const CLI::App*)>([](const CLI::App*) { return true; });
    for (const CLI::App* sub : const_app.get_subcommands(all)) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) return Fail("unknown command '" + std::string(argv[1]) + "' (commands: " + known + ")");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    Fail(std::string(e.what()) + " (run `kvtier --help` for usage)");
    return kExitError;
  }
  if (!run) return Fail("no command given (run `kvtier --help` for usage)");
  return run();
}
