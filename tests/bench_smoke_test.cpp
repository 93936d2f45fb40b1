// Smoke tests of the benchmark tools: every `kvtier-bench` scenario runs with
// --quick and emits one well-formed JSON object; the stable `replay --trace`
// interface reads the trace format and reports what scripts rely on; the
// trace generator is deterministic. No timing is asserted: figures are
// checked for presence and sanity only.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

std::string ToolPath(const std::string& name) {
  const char* dir = std::getenv("KVTIER_TEST_BINARY_DIR");
  return std::string(dir ? dir : ".") + "/../tools/bench/" + name;
}

struct Run {
  int exit_code = -1;
  std::string out;
};

// Runs `command` through the shell; stdout is captured, stderr goes to
// `stderr_file` (so a failure can be shown).
Run Shell(const std::string& command, const std::string& stderr_file) {
  Run r;
  FILE* p = popen((command + " 2>" + stderr_file).c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> objects;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    INFO("line: " << line);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    REQUIRE_FALSE(j.is_discarded());
    objects.push_back(std::move(j));
  }
  return objects;
}

void CheckScenarioObject(const nlohmann::json& j, const std::string& scenario) {
  CHECK(j.value("name", "") == scenario);
  CHECK_FALSE(j.value("generator", "").empty());
  for (const char* key : {"params", "figures", "baselines", "ratio", "target"}) {
    INFO("field " << key);
    REQUIRE(j.contains(key));
    CHECK(j[key].is_object());
  }
  CHECK_FALSE(j["figures"].empty());
  REQUIRE(j.contains("met"));
  CHECK(j["met"].is_boolean());
  REQUIRE(j.contains("checks"));
  REQUIRE(j["checks"].is_array());
  REQUIRE_FALSE(j["checks"].empty());
  for (const auto& c : j["checks"]) {
    INFO("check " << c.dump());
    for (const char* key : {"name", "figure", "baseline", "target"}) CHECK(c[key].is_string());
    for (const char* key : {"value", "baseline_value", "ratio"}) {
      REQUIRE(c[key].is_number());
      CHECK(c[key].get<double>() >= 0);
    }
    CHECK(c["met"].is_boolean());
    CHECK(j["ratio"].contains(c["name"].get<std::string>()));
  }
  REQUIRE(j.contains("machine"));
  CHECK(j["machine"]["nproc"].get<int>() > 0);
}

std::string WriteTraceWithTracegen(const kvtier::test::TempDir& dir, const std::string& args) {
  const std::string path = dir.sub("trace.txt");
  Run gen = Shell(ToolPath("kvtier-tracegen") + " " + args + " -o " + path, dir.sub("gen.err"));
  INFO(Slurp(dir.sub("gen.err")));
  REQUIRE(gen.exit_code == 0);
  return path;
}

}  // namespace

TEST_CASE("every kvtier-bench scenario runs with --quick and prints one JSON object",
          "[bench]") {
  const std::string scenario =
      GENERATE(as<std::string>{}, "lookup", "spill", "promote", "ratio", "restart", "replay",
               "stores", "shared");
  kvtier::test::TempDir dir;
  const std::string err = dir.sub("stderr.txt");
  Run r = Shell(ToolPath("kvtier-bench") + " " + scenario + " --quick --json --dir " +
                    dir.sub("scratch"),
                err);
  INFO("scenario " << scenario << "\nstderr:\n" << Slurp(err));
  REQUIRE(r.exit_code == 0);
  std::vector<nlohmann::json> objects = JsonLines(r.out);
  REQUIRE(objects.size() == 1);
  CheckScenarioObject(objects[0], scenario);
  CHECK(objects[0]["quick"] == true);
}

TEST_CASE("kvtier-bench replay --trace reports hits and a warm restart with --store",
          "[bench]") {
  kvtier::test::TempDir dir;
  const std::string trace =
      WriteTraceWithTracegen(dir,
                             "--requests 40 --system-prompts 3 --documents 8 --seed 5 "
                             "--system-max 512 --turns-max 4 --reply-max 128 --doc-max 512");
  const std::string base = ToolPath("kvtier-bench") + " replay --trace " + trace +
                           " --layout 2,2,16 --dtype f16 --block-size 16 --json";

  SECTION("memory-only") {
    Run r = Shell(base + " --memory-blocks 64", dir.sub("err"));
    INFO(Slurp(dir.sub("err")));
    REQUIRE(r.exit_code == 0);
    auto objects = JsonLines(r.out);
    REQUIRE(objects.size() == 1);
    const auto& j = objects[0];
    CHECK(j["requests"] == 40);
    for (const char* key : {"blocks_total", "blocks_hit_memory", "blocks_hit_disk", "seconds"}) {
      INFO("field " << key);
      REQUIRE(j.contains(key));
      CHECK(j[key].is_number());
    }
    CHECK(j["blocks_total"].get<uint64_t>() > 0);
    CHECK(j["blocks_hit_disk"] == 0);
    CHECK(j["blocks_hit_memory"].get<uint64_t>() <= j["blocks_total"].get<uint64_t>());
    CHECK(j["memory_blocks"] == 64);
  }

  SECTION("with a store, the second run is served whole from the first run's blocks") {
    const std::string store = dir.sub("store");
    Run first = Shell(base + " --memory-bytes 1048576 --store " + store, dir.sub("err1"));
    INFO(Slurp(dir.sub("err1")));
    REQUIRE(first.exit_code == 0);
    Run second = Shell(base + " --memory-bytes 1048576 --store " + store, dir.sub("err2"));
    INFO(Slurp(dir.sub("err2")));
    REQUIRE(second.exit_code == 0);
    auto a = JsonLines(first.out);
    auto b = JsonLines(second.out);
    REQUIRE(a.size() == 1);
    REQUIRE(b.size() == 1);
    CHECK(a[0]["blocks_total"] == b[0]["blocks_total"]);
    const uint64_t total = b[0]["blocks_total"].get<uint64_t>();
    const uint64_t hits =
        b[0]["blocks_hit_memory"].get<uint64_t>() + b[0]["blocks_hit_disk"].get<uint64_t>();
    CHECK(hits == total);
    CHECK(b[0]["blocks_hit_disk"].get<uint64_t>() > 0);
    CHECK(b[0]["blocks_hit_memory"].get<uint64_t>() + b[0]["blocks_hit_disk"].get<uint64_t>() >
          a[0]["blocks_hit_memory"].get<uint64_t>() + a[0]["blocks_hit_disk"].get<uint64_t>());
  }
}

TEST_CASE("kvtier-bench replay rejects a malformed trace naming the line", "[bench]") {
  kvtier::test::TempDir dir;
  const std::string trace = dir.sub("bad.txt");
  {
    std::ofstream out(trace);
    out << "# a comment\n1 2 3\n\n4 5x 6\n";
  }
  Run r = Shell(ToolPath("kvtier-bench") + " replay --trace " + trace, dir.sub("err"));
  const std::string err = Slurp(dir.sub("err"));
  CHECK(r.exit_code == 2);
  CHECK(err.find("bad.txt:4") != std::string::npos);
  CHECK(err.find("'5x'") != std::string::npos);
}

TEST_CASE("kvtier-tracegen writes the same trace for the same seed, in the plain format",
          "[bench]") {
  kvtier::test::TempDir dir;
  const std::string args = "--requests 25 --system-prompts 2 --documents 4";
  Run a = Shell(ToolPath("kvtier-tracegen") + " " + args + " --seed 9", dir.sub("e1"));
  Run b = Shell(ToolPath("kvtier-tracegen") + " " + args + " --seed 9", dir.sub("e2"));
  Run c = Shell(ToolPath("kvtier-tracegen") + " " + args + " --seed 10", dir.sub("e3"));
  REQUIRE(a.exit_code == 0);
  CHECK(a.out == b.out);
  CHECK(a.out != c.out);
  std::istringstream in(a.out);
  std::string line;
  int requests = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    ++requests;
    INFO("line " << line.substr(0, 80));
    CHECK(line.find_first_not_of("0123456789 ") == std::string::npos);
    CHECK(line.find("  ") == std::string::npos);
    CHECK(line.front() != ' ');
    CHECK(line.back() != ' ');
  }
  CHECK(requests == 25);
}

TEST_CASE("kvtier-bench refuses bad arguments with exit code 2 and names them", "[bench]") {
  kvtier::test::TempDir dir;
  struct Case {
    const char* args;
    const char* message;
  };
  const Case c = GENERATE(Case{"nosuch", "nosuch"},
                          Case{"replay --trace t --memory-blocks 3 --memory-bytes 5",
                               "--memory-blocks excludes --memory-bytes"},
                          Case{"spill --trace t", "belong to the replay scenario"},
                          Case{"replay --trace t --layout 2,2", "LAYERS,KV_HEADS,HEAD_DIM"});
  Run r = Shell(ToolPath("kvtier-bench") + " " + c.args, dir.sub("err"));
  const std::string err = Slurp(dir.sub("err"));
  INFO("args: " << c.args << "\nstderr: " << err);
  CHECK(r.exit_code == 2);
  CHECK(err.find(c.message) != std::string::npos);
  CHECK(r.out.empty());
}
