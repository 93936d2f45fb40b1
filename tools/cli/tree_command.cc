// `kvtier tree`: the prefix tree as it is stored. Records link to their
// parent by hash; a node with several children is a prefix that several
// cached prompts share. Shown as an indented tree (runs of single-child
// blocks folded into one line), as Graphviz DOT, or as flat JSON.

#include <algorithm>
#include <cstdio>

#include "cli.h"
#include "format.h"

namespace kvtier::cli {

namespace {

struct TreeArgs {
  std::string dir;
  std::string ns;
  uint32_t max_depth = 0;
  bool dot = false;
};

struct Node {
  RecordMeta meta;
  int parent = -1;
  std::vector<int> children;
  uint64_t descendants = 0;    // records below this one
  uint64_t subtree_bytes = 0;  // stored bytes of this record and all below
  uint64_t prefixes = 0;       // chain ends (leaves) at or below: prompts sharing it
};

// Every record, linked to its parent. Tops are the depth-0 records of each
// namespace and the orphans (depth > 0, parent absent).
struct Forest {
  std::vector<Node> nodes;
  std::map<Hash128, std::vector<int>> roots;    // by namespace
  std::map<Hash128, std::vector<int>> orphans;  // by namespace
};

void BuildForest(std::vector<RecordMeta> records, Forest* f) {
  std::sort(records.begin(), records.end(),
            [](const RecordMeta& a, const RecordMeta& b) { return a.key < b.key; });
  std::map<Hash128, int> index;
  for (auto& r : records) {
    index[r.key] = static_cast<int>(f->nodes.size());
    f->nodes.emplace_back().meta = r;
  }
  for (int i = 0; i < static_cast<int>(f->nodes.size()); ++i) {
    Node& n = f->nodes[i];
    auto it = n.meta.depth == 0 ? index.end() : index.find(n.meta.parent);
    if (n.meta.depth == 0) {
      f->roots[n.meta.namespace_fp].push_back(i);
    } else if (it == index.end()) {
      f->orphans[n.meta.namespace_fp].push_back(i);
    } else {
      n.parent = it->second;
      f->nodes[it->second].children.push_back(i);
    }
  }
  // Post-order sums, iteratively (chains can be thousands of blocks deep).
  std::vector<int> order, stack;
  for (auto* tops : {&f->roots, &f->orphans})
    for (const auto& [fp, list] : *tops) stack.insert(stack.end(), list.begin(), list.end());
  while (!stack.empty()) {
    int n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (int c : f->nodes[n].children) stack.push_back(c);
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node& n = f->nodes[*it];
    n.subtree_bytes += n.meta.stored_bytes;
    if (n.children.empty()) n.prefixes = 1;
    if (n.parent >= 0) {
      Node& p = f->nodes[n.parent];
      p.descendants += 1 + n.descendants;
      p.subtree_bytes += n.subtree_bytes;
      p.prefixes += n.prefixes;
    }
  }
  // Largest subtrees first, then by key: a stable, useful order.
  auto bigger = [f](int a, int b) {
    const Node &x = f->nodes[a], &y = f->nodes[b];
    if (x.subtree_bytes != y.subtree_bytes) return x.subtree_bytes > y.subtree_bytes;
    return x.meta.key < y.meta.key;
  };
  for (auto& n : f->nodes) std::sort(n.children.begin(), n.children.end(), bigger);
  for (auto* tops : {&f->roots, &f->orphans})
    for (auto& [fp, list] : *tops) std::sort(list.begin(), list.end(), bigger);
}

bool Shown(const Node& n, uint32_t max_depth) { return max_depth == 0 || n.meta.depth < max_depth; }

uint64_t TokensCovered(const RecordMeta& m) { return (uint64_t{m.depth} + 1) * m.num_tokens; }

// One line per run of single-child blocks, then its children.
void PrintSubtrees(const Forest& f, const std::vector<int>& tops, uint32_t max_depth,
                   const std::string& indent) {
  struct Frame {
    int node;
    std::string prefix;
    bool last;
  };
  std::vector<Frame> stack;
  for (size_t i = tops.size(); i-- > 0;) stack.push_back({tops[i], indent, i + 1 == tops.size()});
  while (!stack.empty()) {
    Frame fr = stack.back();
    stack.pop_back();
    int start = fr.node, end = fr.node;
    uint64_t run_bytes = f.nodes[start].meta.stored_bytes;
    size_t run = 1;
    while (f.nodes[end].children.size() == 1 && Shown(f.nodes[f.nodes[end].children[0]], max_depth)) {
      end = f.nodes[end].children[0];
      run_bytes += f.nodes[end].meta.stored_bytes;
      ++run;
    }
    const Node &s = f.nodes[start], &e = f.nodes[end];
    std::string line = fr.prefix + (fr.last ? "└─ " : "├─ ") + ShortHex(s.meta.key);
    if (run == 1) {
      line += "  d" + std::to_string(s.meta.depth);
    } else {
      line += ".." + ShortHex(e.meta.key) + "  d" + std::to_string(s.meta.depth) + "-d" +
              std::to_string(e.meta.depth) + " (" + std::to_string(run) + " blocks)";
    }
    line += "  " + std::to_string(TokensCovered(e.meta)) + " tok  " + FormatBytes(run_bytes);
    if (!e.children.empty())
      line += "  +" + std::to_string(e.descendants) + " below (" + FormatBytes(e.subtree_bytes - e.meta.stored_bytes) + ")";
    if (s.prefixes > 1) line += ", shared by " + std::to_string(s.prefixes) + " prefixes";
    std::printf("%s\n", line.c_str());

    std::string child_prefix = fr.prefix + (fr.last ? "   " : "│  ");
    if (!e.children.empty() && !Shown(f.nodes[e.children[0]], max_depth)) {
      std::printf("%s└─ ... %llu block%s below depth %u\n", child_prefix.c_str(),
                  static_cast<unsigned long long>(e.descendants), e.descendants == 1 ? "" : "s",
                  max_depth);
      continue;
    }
    for (size_t i = e.children.size(); i-- > 0;)
      stack.push_back({e.children[i], child_prefix, i + 1 == e.children.size()});
  }
}

std::vector<Hash128> NamespacesShown(const Forest& f, const NamespaceMap& namespaces,
                                     const std::string& only_spec, const Hash128& only) {
  std::vector<Hash128> out;
  if (!only_spec.empty()) return {only};
  for (const auto& [fp, e] : namespaces) out.push_back(fp);
  for (auto* tops : {&f.roots, &f.orphans})
    for (const auto& [fp, list] : *tops)
      if (std::find(out.begin(), out.end(), fp) == out.end()) out.push_back(fp);
  return out;
}

void PrintText(const Forest& f, const NamespaceMap& namespaces, const std::vector<Hash128>& shown,
               uint32_t max_depth) {
  static const std::vector<int> kNone;
  for (const Hash128& fp : shown) {
    auto r = f.roots.find(fp);
    auto o = f.orphans.find(fp);
    const auto& roots = r == f.roots.end() ? kNone : r->second;
    const auto& orphans = o == f.orphans.end() ? kNone : o->second;
    uint64_t blocks = 0, bytes = 0, prefixes = 0;
    for (const auto* list : {&roots, &orphans})
      for (int n : *list) {
        blocks += 1 + f.nodes[n].descendants;
        bytes += f.nodes[n].subtree_bytes;
        prefixes += f.nodes[n].prefixes;
      }
    auto ns = namespaces.find(fp);
    std::string layout = ns == namespaces.end() || ns->second.ns.layout.num_layers == 0
                             ? ""
                             : "  " + ns->second.ns.layout.ToString();
    std::printf("%s [%s]%s: %llu blocks, %s, %llu cached prefixes\n",
                NamespaceLabel(namespaces, fp).c_str(), ShortHex(fp).c_str(), layout.c_str(),
                static_cast<unsigned long long>(blocks), FormatBytes(bytes).c_str(),
                static_cast<unsigned long long>(prefixes));
    PrintSubtrees(f, roots, max_depth, "");
    if (!orphans.empty()) {
      std::printf("(orphaned: parent missing; `kvtier verify --repair` removes them)\n");
      PrintSubtrees(f, orphans, max_depth, "");
    }
  }
}

std::string DotQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

void PrintDot(const Forest& f, const NamespaceMap& namespaces, const std::vector<Hash128>& shown,
              uint32_t max_depth) {
  std::printf("digraph kvtier {\n  rankdir=LR;\n");
  std::printf("  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
  for (const Hash128& fp : shown) {
    std::string id = DotQuote("ns:" + fp.ToHex());
    auto ns = namespaces.find(fp);
    // Quote each line, then join them with DOT's "\n" line break.
    std::string label = DotQuote(NamespaceLabel(namespaces, fp));
    if (ns != namespaces.end() && ns->second.ns.layout.num_layers != 0)
      label = label.substr(0, label.size() - 1) + "\\n" + ns->second.ns.layout.ToString() + "\"";
    std::printf("  %s [shape=ellipse, label=%s];\n", id.c_str(), label.c_str());
    std::vector<int> stack;
    for (auto* tops : {&f.roots, &f.orphans}) {
      auto it = tops->find(fp);
      if (it != tops->end()) stack.insert(stack.end(), it->second.begin(), it->second.end());
    }
    while (!stack.empty()) {
      const Node& n = f.nodes[stack.back()];
      stack.pop_back();
      if (!Shown(n, max_depth)) continue;
      std::string key = DotQuote(n.meta.key.ToHex());
      std::string text = ShortHex(n.meta.key) + " d" + std::to_string(n.meta.depth) + "\\n" +
                         std::to_string(TokensCovered(n.meta)) + " tok, " +
                         FormatBytes(n.meta.stored_bytes);
      if (n.descendants > 0) text += "\\n+" + std::to_string(n.descendants) + " below";
      bool orphan = n.parent < 0 && n.meta.depth > 0;
      std::printf("  %s [label=\"%s\"%s];\n", key.c_str(), text.c_str(),
                  orphan ? ", color=red, style=dashed" : "");
      if (n.parent >= 0)
        std::printf("  %s -> %s;\n", DotQuote(f.nodes[n.parent].meta.key.ToHex()).c_str(), key.c_str());
      else if (!orphan)
        std::printf("  %s -> %s;\n", id.c_str(), key.c_str());
      for (int c : n.children) stack.push_back(c);
    }
  }
  std::printf("}\n");
}

nlohmann::json TreeJson(const Forest& f, const NamespaceMap& namespaces,
                        const std::vector<Hash128>& shown, uint32_t max_depth) {
  nlohmann::json ns_list = nlohmann::json::array(), nodes = nlohmann::json::array();
  auto keys_of = [&](const std::vector<int>& list) {
    nlohmann::json keys = nlohmann::json::array();
    for (int n : list)
      if (Shown(f.nodes[n], max_depth)) keys.push_back(f.nodes[n].meta.key.ToHex());
    return keys;
  };
  for (const Hash128& fp : shown) {
    std::vector<int> stack;
    nlohmann::json entry = {{"fingerprint", fp.ToHex()}, {"label", NamespaceLabel(namespaces, fp)}};
    for (auto [tops, name] : {std::pair{&f.roots, "roots"}, std::pair{&f.orphans, "orphans"}}) {
      auto it = tops->find(fp);
      std::vector<int> list = it == tops->end() ? std::vector<int>{} : it->second;
      entry[name] = keys_of(list);
      stack.insert(stack.end(), list.rbegin(), list.rend());
    }
    ns_list.push_back(entry);
    while (!stack.empty()) {
      const Node& n = f.nodes[stack.back()];
      stack.pop_back();
      if (!Shown(n, max_depth)) continue;
      nodes.push_back({
          {"key", n.meta.key.ToHex()},
          {"parent", n.meta.parent.ToHex()},
          {"namespace", fp.ToHex()},
          {"depth", n.meta.depth},
          {"tokens_covered", TokensCovered(n.meta)},
          {"bytes_stored", n.meta.stored_bytes},
          {"children", keys_of(n.children)},
          {"descendants", n.descendants},
          {"subtree_bytes_stored", n.subtree_bytes},
          {"prefixes", n.prefixes},
          {"orphan", n.parent < 0 && n.meta.depth > 0},
      });
      stack.insert(stack.end(), n.children.rbegin(), n.children.rend());
    }
  }
  return {{"namespaces", ns_list}, {"nodes", nodes}};
}

int RunTree(const TreeArgs& args, const CommonFlags& flags) {
  if (args.dot && flags.json) return Fail("tree: choose one of --dot and --json");
  std::unique_ptr<BlockStore> store;
  Status s = OpenStore(args.dir, Access::kRead, "tree", flags, &store);
  if (!s.ok()) return Fail(s.message());
  NamespaceMap namespaces;
  s = LoadNamespaces(store.get(), &namespaces);
  if (!s.ok()) return Fail(s.message());
  Hash128 only;
  if (!args.ns.empty()) {
    s = ResolveNamespace(namespaces, args.ns, &only);
    if (!s.ok()) return Fail(s.message());
  }
  std::vector<RecordMeta> records;
  s = LoadRecords(store.get(), &records);
  if (!s.ok()) return Fail(s.WithContext("cannot list records").message());
  if (!args.ns.empty())
    std::erase_if(records, [&](const RecordMeta& r) { return r.namespace_fp != only; });
  Forest forest;
  BuildForest(std::move(records), &forest);
  std::vector<Hash128> shown = NamespacesShown(forest, namespaces, args.ns, only);
  if (args.dot)
    PrintDot(forest, namespaces, shown, args.max_depth);
  else if (flags.json)
    PrintJson(TreeJson(forest, namespaces, shown, args.max_depth));
  else
    PrintText(forest, namespaces, shown, args.max_depth);
  return kExitOk;
}

}  // namespace

void RegisterTreeCommand(CLI::App* app, CommonFlags* flags, CommandRun* run) {
  auto args = std::make_shared<TreeArgs>();
  CLI::App* cmd = app->add_subcommand(
      "tree", "The stored prefix tree: shared prefixes, descendants and bytes under each node");
  cmd->add_option("DIR", args->dir, "Store directory")->required();
  cmd->add_option("-n,--namespace", args->ns,
                  "Only this namespace (fingerprint prefix, model, or model@revision)");
  cmd->add_option("--max-depth", args->max_depth,
                  "Show blocks of depth < D only (0 = all); counts still cover everything");
  cmd->add_flag("--dot", args->dot, "Print Graphviz DOT instead of the indented tree");
  AddCommonFlags(cmd, flags);
  cmd->callback([=] { *run = [=] { return RunTree(*args, *flags); }; });
}

}  // namespace kvtier::cli
