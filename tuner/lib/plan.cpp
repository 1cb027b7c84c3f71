#include "plan.hpp"

#include <algorithm>

#include "value.hpp"

namespace tcptune {

size_t ApplyPlan::live_changes() const {
  return static_cast<size_t>(std::count_if(changes.begin(), changes.end(), [](const Change& c) { return c.changes; }));
}

std::vector<KV> profile_kvs(const Profile& p) {
  std::vector<KV> kvs;
  for (const auto& s : p.settings) kvs.push_back({s.key, s.value});
  return kvs;
}

std::vector<std::string> block_keys(const std::string& conf_text) {
  std::vector<std::string> keys;
  for (const auto& a : parse_conf(conf_text).assignments)
    if (a.in_block) keys.push_back(a.key);
  return keys;
}

namespace {

// The value a key had before the first entry in history changed it.
struct Origin {
  enum Kind { Known, NeverChanged, Unknown } kind = Unknown;
  std::string value;
};

Origin origin_of(const std::string& key, const std::vector<JournalEntry>& history, bool history_covers_block) {
  for (const auto& e : history)
    for (const auto& v : e.values)
      if (v.key == key) return {Origin::Known, v.before};
  for (const auto& e : history)
    for (const auto& k : e.kept)
      if (k.key == key) return {Origin::Unknown, {}};
  return {history_covers_block ? Origin::NeverChanged : Origin::Unknown, {}};
}

}  // namespace

std::vector<Dropped> dropped_keys(const std::string& conf_text, const Profile& p, const std::vector<JournalEntry>& history,
                                  const LiveMap& live) {
  std::vector<Dropped> out;
  auto parsed = parse_conf(conf_text);
  if (!parsed.error.empty() || !parsed.block.present) return out;
  // The journal explains the block only if the latest entry wrote the block that is there now.
  bool covers = !history.empty() && block_text(history.back().conf_after) == block_text(conf_text);
  for (const auto& a : parsed.assignments) {
    if (!a.in_block || p.find(a.key)) continue;
    Dropped d;
    d.key = a.key;
    d.block_value = a.value;
    auto it = live.find(a.key);
    if (it != live.end() && it->second.present) d.live = it->second.value;
    std::string was = "no longer set by " + p.name + " (" + parsed.block.profile + " set it to " + a.value + ")";
    auto origin = origin_of(a.key, history, covers);
    if (!d.live) {
      d.note = was + ": absent here, nothing to restore";
    } else if (origin.kind == Origin::NeverChanged) {
      d.note = was + ": it already had this value before tcptune, left as it is";
    } else if (origin.kind == Origin::Known && same_value(*d.live, origin.value)) {
      d.note = was + ": already back at its value from before tcptune";
    } else if (origin.kind == Origin::Known && same_value(*d.live, a.value)) {
      d.restore_to = origin.value;
      d.note = was + ": restored to its value from before tcptune";
    } else if (origin.kind == Origin::Known) {
      d.note = was + ": changed by someone else since (live " + *d.live + "), left as is and no longer persisted";
    } else {
      d.kept = true;
      d.note = was + ": its value from before tcptune is unknown (no journal entry for it here), so " + *d.live +
               " is left as is, live but no longer persisted; verify reports it";
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<std::string> journal_keys(const std::vector<JournalEntry>& history) {
  std::vector<std::string> keys;
  auto add = [&](const std::string& k) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  };
  for (const auto& e : history) {
    for (const auto& v : e.values) add(v.key);
    for (const auto& k : e.kept) add(k.key);
  }
  return keys;
}

ApplyPlan make_plan(const Profile& p, const LiveMap& live, const std::string& conf_text) {
  ApplyPlan plan;
  for (const auto& s : p.settings) {
    // Built in place: moving a Change (optional<string>) trips a g++ 12 maybe-uninitialized false positive.
    Change& c = plan.changes.emplace_back();
    c.key = s.key;
    c.after = s.value;
    auto it = live.find(s.key);
    if (it != live.end() && it->second.present) {
      c.before = it->second.value;
      c.changes = !same_value(it->second.value, s.value);
    } else {
      c.changes = true;
      std::string why = it == live.end() || it->second.error.empty() ? "absent in this kernel" : it->second.error;
      plan.problems.push_back(s.key + ": " + why);
    }
  }
  plan.conf_before = conf_text;
  auto edit = set_block(conf_text, p.name, profile_kvs(p));
  if (!edit.error.empty()) {
    plan.error = edit.error;
    plan.conf_after = conf_text;
  } else {
    plan.conf_after = edit.text;
  }
  return plan;
}

DriftReport compute_drift(const Profile& p, const LiveMap& live, const std::string& conf_path, const std::string& conf_text,
                          const std::vector<BootFile>& order, bool conf_linked, const std::vector<JournalEntry>& history) {
  DriftReport rep;
  auto parsed = parse_conf(conf_text);
  if (!parsed.error.empty()) rep.warnings.push_back(conf_path + ": " + parsed.error);
  if (!parsed.block.present) {
    rep.warnings.push_back(conf_path + ": no tcptune managed block: the profile is not persisted");
  } else if (parsed.block.profile != p.name) {
    rep.warnings.push_back(conf_path + ": the managed block holds profile '" + parsed.block.profile + "', not '" + p.name + "'");
  }
  if (!conf_linked)
    rep.warnings.push_back("no sysctl.d entry links to " + conf_path +
                           ": systemd-sysctl will not read it at boot (procps `sysctl --system` does, last)");
  bool block_is_ours = parsed.block.present && parsed.block.profile == p.name;
  for (const auto& s : p.settings) {
    DriftRow r;
    r.key = s.key;
    r.want = s.value;
    auto it = live.find(s.key);
    if (it != live.end() && it->second.present) r.live = it->second.value;
    r.live_ok = r.live && same_value(*r.live, s.value);
    if (block_is_ours) {
      for (const auto& a : parsed.assignments)
        if (a.in_block && a.key == s.key) r.persisted = a.value;
    }
    r.persisted_ok = r.persisted && same_value(*r.persisted, s.value);
    r.boot = boot_source(order, s.key);
    r.boot_ok = r.boot && same_value(r.boot->value, s.value);
    std::vector<std::string> notes;
    if (!r.live) notes.push_back(it == live.end() || it->second.error.empty() ? "absent in this kernel" : it->second.error);
    if (r.boot && !r.boot_ok) {
      bool from_block = r.boot->path == conf_path && parsed.block.present &&
                        r.boot->line > static_cast<int>(parsed.block.begin) && r.boot->line <= static_cast<int>(parsed.block.end);
      if (!from_block) {
        std::string w = r.boot->path + ":" + std::to_string(r.boot->line) + " sets " + s.key + " = " + r.boot->value +
                        " and wins at boot over the profile's " + s.value;
        notes.push_back("overridden at boot by " + r.boot->path + ":" + std::to_string(r.boot->line));
        rep.warnings.push_back(w);
      }
    }
    if (!r.boot) notes.push_back("not set at boot");
    for (const auto& n : notes) r.note += (r.note.empty() ? "" : "; ") + n;
    if (!r.ok()) rep.drift = true;
    rep.rows.push_back(std::move(r));
  }
  for (const auto& key : journal_keys(history)) {
    if (p.find(key)) continue;
    // tcptune's latest word on the key, and its value before tcptune first changed it
    std::optional<std::string> origin, set;
    std::string by;
    bool origin_unknown = false;
    for (const auto& e : history) {
      for (const auto& v : e.values)
        if (v.key == key) {
          if (!origin && !origin_unknown) origin = v.before;
          set = v.after;
          by = e.profile;
        }
      for (const auto& k : e.kept)
        if (k.key == key) {
          if (!origin) origin_unknown = true;
          set = k.value;
          by = e.profile;
        }
    }
    auto it = live.find(key);
    if (it == live.end() || !it->second.present || !set) continue;
    const std::string& now = it->second.value;
    if (origin && same_value(now, *origin)) continue;  // back where it was before tcptune
    if (!same_value(now, *set)) continue;              // someone else's value since, not tcptune's
    auto boot = boot_source(order, key);
    if (boot && same_value(boot->value, now)) continue;  // a file restores it at boot
    DriftRow r;
    r.key = key;
    r.want = "-";
    r.live = now;
    r.boot = boot;
    r.stale = true;
    r.note = "not in " + p.name + ": live " + now + " was set by tcptune (" + by + ") and no file restores it at boot" +
             (origin ? " (it was " + *origin + " before tcptune)" : "") + "; re-apply " + by + ", add it to the profile or roll back";
    rep.warnings.push_back(key + ": " + r.note);
    rep.drift = true;
    rep.rows.push_back(std::move(r));
  }
  if (!block_is_ours) rep.drift = true;
  return rep;
}

namespace {

struct Op {
  char kind;  // ' ', '-', '+'
  size_t a, b;
};

std::vector<Op> diff_ops(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  // LCS table; config files are small (hundreds of lines), so quadratic is fine. Common prefix and
  // suffix are stripped first, which makes the usual one-block edit linear.
  size_t pre = 0;
  while (pre < a.size() && pre < b.size() && a[pre] == b[pre]) ++pre;
  size_t suf = 0;
  while (suf < a.size() - pre && suf < b.size() - pre && a[a.size() - 1 - suf] == b[b.size() - 1 - suf]) ++suf;
  size_t n = a.size() - pre - suf, m = b.size() - pre - suf;
  std::vector<std::vector<unsigned>> L(n + 1, std::vector<unsigned>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      L[i][j] = a[pre + i] == b[pre + j] ? L[i + 1][j + 1] + 1 : std::max(L[i + 1][j], L[i][j + 1]);
  std::vector<Op> ops;
  for (size_t i = 0; i < pre; ++i) ops.push_back({' ', i, i});
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[pre + i] == b[pre + j]) {
      ops.push_back({' ', pre + i, pre + j});
      ++i;
      ++j;
    } else if (i < n && (j == m || L[i + 1][j] >= L[i][j + 1])) {
      ops.push_back({'-', pre + i, pre + j});  // deletions first, as diff(1) prints them
      ++i;
    } else {
      ops.push_back({'+', pre + i, pre + j});
      ++j;
    }
  }
  for (size_t k = 0; k < suf; ++k) ops.push_back({' ', pre + n + k, pre + m + k});
  return ops;
}

}  // namespace

std::string unified_diff(const std::string& ta, const std::string& tb, const std::string& a_name, const std::string& b_name) {
  if (ta == tb) return {};
  bool nla = false, nlb = false;
  auto a = split_lines(ta, &nla);
  auto b = split_lines(tb, &nlb);
  // A missing final newline is a difference too; mark it the way diff(1) does.
  if (!a.empty() && !nla) a.back() += "\n\\ No newline at end of file";
  if (!b.empty() && !nlb) b.back() += "\n\\ No newline at end of file";
  auto ops = diff_ops(a, b);
  std::string out = "--- " + a_name + "\n+++ " + b_name + "\n";
  const size_t ctx = 3;
  size_t k = 0;
  while (k < ops.size()) {
    if (ops[k].kind == ' ') {
      ++k;
      continue;
    }
    size_t start = k >= ctx ? k - ctx : 0;
    size_t end = k;
    // extend the hunk while changes are within 2*ctx of each other
    size_t last_change = k;
    for (size_t q = k; q < ops.size(); ++q) {
      if (ops[q].kind != ' ') last_change = q;
      if (q - last_change > 2 * ctx) break;
      end = q;
    }
    end = std::min(ops.size() - 1, last_change + ctx);
    size_t a_start = ops[start].a, b_start = ops[start].b, a_len = 0, b_len = 0;
    std::string body;
    for (size_t q = start; q <= end; ++q) {
      const auto& op = ops[q];
      if (op.kind == ' ') {
        body += " " + a[op.a] + "\n";
        ++a_len;
        ++b_len;
      } else if (op.kind == '-') {
        body += "-" + a[op.a] + "\n";
        ++a_len;
      } else {
        body += "+" + b[op.b] + "\n";
        ++b_len;
      }
    }
    out += "@@ -" + std::to_string(a_len ? a_start + 1 : a_start) + "," + std::to_string(a_len) + " +" +
           std::to_string(b_len ? b_start + 1 : b_start) + "," + std::to_string(b_len) + " @@\n" + body;
    k = end + 1;
  }
  return out;
}

}  // namespace tcptune
