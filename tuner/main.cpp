// tcptune: apply, verify, diff and roll back TCP sysctl profiles; diagnose socket state.
// This file is the command-line shell: it gathers inputs, calls the pure code in tuner/lib, and
// performs the writes in the order that keeps every failure recoverable.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "lib/args.hpp"
#include "lib/diagnose.hpp"
#include "lib/journal.hpp"
#include "lib/plan.hpp"
#include "lib/profile.hpp"
#include "lib/registry.hpp"
#include "lib/sysctl_conf.hpp"
#include "lib/value.hpp"
#include "sys/system.hpp"

using json = nlohmann::json;
using namespace tcptune;

namespace {

// 0 done; 1 ran but failed or found something (drift, findings, apply rolled back); 2 usage or input
// error, nothing done. Interrupted runs exit 128 + the signal number, after saying so.
enum Exit { kOk = 0, kFailed = 1, kUsage = 2 };

struct Options {
  std::string command;
  std::string profile;
  std::vector<std::string> keys;
  std::string sysctl_conf = "/etc/sysctl.conf";
  std::string state_dir = "/var/lib/tcptune";
  std::string netns;
  std::vector<std::string> sysctl_d;
  std::vector<std::string> profile_dirs;
  bool dry_run = false;
  bool json = false;
  bool conf_given = false, state_given = false;
  double interval = 0;
  Thresholds thresholds;
  std::string interval_arg, syn_recv_arg, close_wait_arg, time_wait_arg;
};

const std::vector<std::string> kDefaultSysctlD = {"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
                                                  "/lib/sysctl.d"};

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void err(const std::string& msg) { std::cerr << "tcptune: " << msg << "\n"; }

void emit_json(const json& j) { std::cout << j.dump(2) << "\n"; }

// Ends a command on an error: the reason on stderr, and with --json also a document on stdout, so
// a script reading stdout never mistakes silence for success.
int fail(const Options& o, json& out, int code, const std::vector<std::string>& errors, const std::string& status = "") {
  for (const auto& e : errors) {
    if (e.starts_with("  "))
      std::cerr << e << "\n";  // detail lines under a headline
    else
      err(e);
  }
  if (o.json) {
    out["status"] = status.empty() ? (code == kUsage ? "error" : "failed") : status;
    out["errors"] = errors;
    out["exit_code"] = code;
    emit_json(out);
  }
  return code;
}

std::string signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "signal"; }

// Same file: equal absolute paths, or both resolve to one file.
bool same_file(const std::string& a, const std::string& b) {
  if (a == b) return true;
  auto ra = sys::real_path(a), rb = sys::real_path(b);
  return !ra.empty() && ra == rb;
}

ProfileSource profile_source(const Options& o) {
  ProfileSource src;
  src.read = [](const std::string& p) -> std::optional<std::string> {
    auto d = sys::read_file(p);
    if (!d.exists || !d.error.empty()) return std::nullopt;
    return d.text;
  };
  src.search_dirs = o.profile_dirs;
  if (const char* env = std::getenv("TCPTUNE_PROFILE_PATH")) {
    std::stringstream ss(env);
    std::string d;
    while (std::getline(ss, d, ':'))
      if (!d.empty()) src.search_dirs.push_back(d);
  }
  src.search_dirs.push_back(TCPTUNE_INSTALL_PROFILE_DIR);
  src.search_dirs.push_back(TCPTUNE_SOURCE_PROFILE_DIR);
  return src;
}

// Loads and checks the profile, including whether it may be applied inside the requested netns.
// On error it has reported it (fail()); the caller exits kUsage.
std::optional<Profile> load(const Options& o, json& out, std::vector<std::string>& warnings) {
  auto res = load_profile(o.profile, profile_source(o));
  if (!res.profile) {
    if (!o.json) err("invalid profile, nothing applied:");
    std::vector<std::string> errors;
    for (const auto& e : res.errors) errors.push_back(o.json ? e : "  " + e);
    fail(o, out, kUsage, errors, "invalid-profile");
    return std::nullopt;
  }
  if (!o.netns.empty()) {
    std::vector<std::string> host;
    for (const auto& s : res.profile->settings) {
      if (!s.def) {
        warnings.push_back(s.key + ": not in the registry, so its netns scope is unknown; the kernel refuses it in a netns if it is host-wide");
      } else if (s.def->scope != Scope::PerNetns) {
        host.push_back(s.key + " (" + std::string(scope_name(s.def->scope)) + ")");
      }
    }
    if (!host.empty()) {
      std::vector<std::string> errors{"--netns " + o.netns +
                                      ": these keys are host-wide, not per network namespace; setting them would change the host:"};
      for (const auto& h : host) errors.push_back("  " + h);
      errors.push_back("  (remove them with [profile] unset = [...] in a profile for namespaces)");
      fail(o, out, kUsage, errors, "invalid-profile");
      return std::nullopt;
    }
  }
  return res.profile;
}

// "" once inside the requested netns (or when none was asked for), else why not.
std::string enter(const Options& o) {
  if (o.netns.empty()) return "";
  return sys::enter_netns(o.netns);
}

LiveMap read_live(const Profile& p) {
  LiveMap live;
  for (const auto& s : p.settings) live[s.key] = sys::read_sysctl(s.key);
  return live;
}

std::string journal_dir(const std::string& state_dir) { return state_dir + "/journal"; }
std::string journal_dir(const Options& o) { return journal_dir(o.state_dir); }

// Creates the state directory (with the journal's rolled-back folder) and takes its lock, held
// until the process exits, so two writers never interleave their journal entries. "" or the error.
std::string prepare_state_dir(const Options& o) {
  if (auto e = sys::make_dirs(journal_dir(o) + "/rolled-back", 0700); !e.empty()) return "state dir: " + e;
  return sys::lock_state_dir(o.state_dir);
}

struct Stored {
  JournalEntry entry;
  std::string path;
};

struct Journal {
  std::vector<Stored> active;  // not rolled back, oldest first
  unsigned long max_id = 0;    // over rolled-back entries too: ids are never reused
  std::string error;           // a corrupt entry stops everything: guessing is unsafe
  const Stored* pending() const {
    for (const auto& s : active)
      if (s.entry.state != "committed") return &s;
    return nullptr;
  }
  // Entries of one (netns, sysctl.conf): what rollback, switches and verify reason about.
  std::vector<const Stored*> scope(const std::string& netns, const std::string& conf) const {
    std::vector<const Stored*> out;
    for (const auto& s : active)
      if (s.entry.netns == netns && same_file(s.entry.conf_path, conf)) out.push_back(&s);
    return out;
  }
  std::vector<JournalEntry> history(const std::string& netns, const std::string& conf) const {
    std::vector<JournalEntry> out;
    for (const auto* s : scope(netns, conf)) out.push_back(s->entry);
    return out;
  }
};

Journal load_journal(const std::string& state_dir) {
  Journal j;
  for (const auto& sub : {std::string(""), std::string("/rolled-back")}) {
    for (const auto& name : sys::list_dir(journal_dir(state_dir) + sub)) {
      auto id = journal_id_from_name(name);
      if (!id) continue;
      j.max_id = std::max(j.max_id, *id);
      if (!sub.empty()) continue;
      std::string path = journal_dir(state_dir) + "/" + name;
      auto d = sys::read_file(path);
      std::string e = d.error;
      std::optional<JournalEntry> entry;
      if (e.empty()) entry = journal_from_json(d.text, &e);
      if (!entry) {
        j.error = path + ": " + e + "; move it out of " + journal_dir(state_dir) + " to go on without it";
        return j;
      }
      j.active.push_back({*entry, path});
    }
  }
  std::sort(j.active.begin(), j.active.end(), [](const Stored& a, const Stored& b) { return a.entry.id < b.entry.id; });
  return j;
}

std::string interrupted_note(const Stored& s) {
  std::string scope = (s.entry.netns.empty() ? "" : "--netns " + s.entry.netns + " ") + "--sysctl-conf " + s.entry.conf_path;
  return "journal entry " + std::to_string(s.entry.id) + " (" + s.entry.profile + ", " + s.entry.time +
         ") is from an apply that was interrupted before it finished; run `tcptune " + scope + " rollback` to undo what it wrote";
}

std::string value_table(const std::vector<Change>& changes, bool only_changes, size_t w = 0) {
  for (const auto& c : changes) w = std::max(w, c.key.size());
  std::string out;
  for (const auto& c : changes) {
    if (only_changes && !c.changes) continue;
    std::string line = "  " + c.key + std::string(w - c.key.size() + 2, ' ');
    if (!c.before) {
      line += "(absent) -> " + c.after + "   FAILS: not in this kernel";
    } else if (c.changes) {
      line += *c.before + " -> " + c.after;
    } else {
      line += c.after + "   (unchanged)";
    }
    out += line + "\n";
  }
  return out;
}

json changes_json(const std::vector<Change>& changes) {
  json a = json::array();
  for (const auto& c : changes)
    a.push_back({{"key", c.key}, {"before", c.before ? json(*c.before) : json(nullptr)}, {"after", c.after}, {"changes", c.changes}});
  return a;
}

// Writes `before` values back, newest first. Returns the keys that could not be restored.
std::vector<std::string> restore_values(const std::vector<JournalValue>& written) {
  std::vector<std::string> failed;
  for (auto it = written.rbegin(); it != written.rend(); ++it) {
    auto e = sys::write_sysctl(it->key, it->before);
    if (!e.empty()) failed.push_back(it->key + ": " + e);
  }
  return failed;
}

int cmd_apply(const Options& o, bool diff_only) {
  json out;
  out["command"] = diff_only ? "diff" : "apply";
  std::vector<std::string> warnings;
  auto profile = load(o, out, warnings);
  if (!profile) return kUsage;
  bool dry = diff_only || o.dry_run;
  if (!dry && !o.netns.empty() && !o.conf_given)
    return fail(o, out, kUsage,
                {"--netns " + o.netns + " needs an explicit --sysctl-conf: values persisted in /etc/sysctl.conf would be applied to the "
                 "host at boot, not to the namespace"});
  if (auto e = sys::regular_file_error(o.sysctl_conf); !e.empty()) return fail(o, out, kUsage, {e});
  if (auto e = enter(o); !e.empty()) return fail(o, out, kUsage, {e});
  out["profile"] = profile->name;
  out["chain"] = profile->chain;
  out["netns"] = o.netns;
  out["sysctl_conf"] = o.sysctl_conf;

  // The lock comes before the journal is read, so the history a switch relies on cannot change under us.
  if (!dry)
    if (auto e = prepare_state_dir(o); !e.empty()) return fail(o, out, kUsage, {e});
  auto journal = load_journal(o.state_dir);
  if (!journal.error.empty()) return fail(o, out, kUsage, {journal.error});
  if (const auto* p = journal.pending(); p && !dry) return fail(o, out, kUsage, {interrupted_note(*p)}, "interrupted");

  auto conf = sys::read_file(o.sysctl_conf);
  if (!conf.error.empty()) return fail(o, out, kUsage, {conf.error});
  auto live = read_live(*profile);
  auto plan = make_plan(*profile, live, conf.text);
  if (!plan.error.empty()) return fail(o, out, kUsage, {o.sysctl_conf + ": " + plan.error});

  // Profile switch: keys the old block persisted that this profile does not set.
  auto history = journal.history(o.netns, o.sysctl_conf);
  LiveMap old_live;
  for (const auto& k : block_keys(conf.text))
    if (!profile->find(k)) old_live[k] = sys::read_sysctl(k);
  auto dropped = dropped_keys(conf.text, *profile, history, old_live);
  json dropped_json = json::array();
  for (const auto& d : dropped)
    dropped_json.push_back({{"key", d.key},
                            {"live", d.live ? json(*d.live) : json(nullptr)},
                            {"restore_to", d.restore_to ? json(*d.restore_to) : json(nullptr)},
                            {"kept", d.kept},
                            {"note", d.note}});
  out["changes"] = changes_json(plan.changes);
  out["dropped"] = dropped_json;
  out["conf_diff"] = unified_diff(plan.conf_before, plan.conf_after, o.sysctl_conf, o.sysctl_conf + " (after)");
  out["warnings"] = warnings;
  bool restores = std::any_of(dropped.begin(), dropped.end(), [](const Dropped& d) { return d.restore_to.has_value(); });
  auto print_plan = [&](bool with_diff) {
    std::cout << "profile " << profile->name;
    if (profile->chain.size() > 1) {
      std::string c;
      for (const auto& n : profile->chain) c += (c.empty() ? "" : " -> ") + n;
      std::cout << " (" << c << ")";
    }
    std::cout << (o.netns.empty() ? "" : " in netns " + o.netns) << "\n";
    for (const auto& w : warnings) std::cout << "warning: " << w << "\n";
    size_t w = 0;
    for (const auto& d : dropped) w = std::max(w, d.key.size());
    for (const auto& c : plan.changes) w = std::max(w, c.key.size());
    std::cout << value_table(plan.changes, false, w);
    for (const auto& d : dropped)
      std::cout << "  " << d.key << std::string(w - d.key.size() + 2, ' ')
                << (d.restore_to ? *d.live + " -> " + *d.restore_to + "   " : "") << "(" << d.note << ")\n";
    if (with_diff) {
      std::string d = out["conf_diff"];
      std::cout << (d.empty() ? o.sysctl_conf + ": no change\n" : d);
    }
  };
  if (!plan.problems.empty()) {
    // apply would fail on these keys: diff and --dry-run say so with exit 1 too
    if (dry && !o.json) print_plan(true);
    std::vector<std::string> errors;
    if (!o.json) err(dry ? "apply would fail before writing anything:" : "apply failed before writing anything (nothing to roll back):");
    for (const auto& p : plan.problems) errors.push_back(o.json ? p : "  " + p);
    return fail(o, out, kFailed, errors);
  }
  if (plan.nothing_to_do() && !restores) {
    out["status"] = "unchanged";
    if (o.json)
      emit_json(out);
    else
      std::cout << "profile " << profile->name << " is already applied: live values and " << o.sysctl_conf
                << " match, nothing to change\n";
    return kOk;
  }
  if (dry) {
    out["status"] = "dry-run";
    if (o.json)
      emit_json(out);
    else {
      print_plan(true);
      std::cout << "(dry run: nothing written)\n";
    }
    return kOk;
  }

  // --- the transaction: a signal now is held until it is complete or undone ---
  sys::HeldSignals held;
  JournalEntry entry;
  entry.id = journal.max_id + 1;
  entry.time = now_iso();
  entry.state = "pending";
  entry.profile = profile->name;
  entry.profile_path = sys::real_path(profile->path);
  entry.netns = o.netns;
  entry.conf_path = o.sysctl_conf;
  entry.conf_existed = conf.exists;
  entry.conf_mode = conf.exists ? conf.mode : 0644;
  entry.conf_before = plan.conf_before;
  entry.conf_after = plan.conf_after;
  for (const auto& c : plan.changes)
    if (c.changes) entry.values.push_back({c.key, *c.before, c.after});
  for (const auto& d : dropped) {
    if (d.restore_to) entry.values.push_back({d.key, *d.live, *d.restore_to});
    if (d.kept) entry.kept.push_back({d.key, *d.live});
  }
  std::string jpath = journal_dir(o) + "/" + journal_file_name(entry.id);
  // Journal first: if we die half way, the previous values are already on disk for rollback.
  if (auto e = sys::atomic_write(jpath, journal_to_json(entry), 0600); !e.empty())
    return fail(o, out, kFailed, {"journal: " + e + " (nothing written)"});
  std::vector<JournalValue> written;
  std::string failure;
  for (const auto& v : entry.values) {
    written.push_back(v);  // a failed write may still have changed the value
    if (auto e = sys::write_sysctl(v.key, v.after); !e.empty()) {
      failure = v.key + " = " + v.after + ": " + e;
      // A refused write normally leaves the old value; only restore it if it did change.
      auto now = sys::read_sysctl(v.key);
      if (now.present && same_value(now.value, v.before)) written.pop_back();
      break;
    }
    auto back = sys::read_sysctl(v.key);
    if (!back.present || !same_value(back.value, v.after)) {
      failure = v.key + " = " + v.after + ": the kernel kept " + (back.present ? back.value : back.error) +
                " (clamped or rejected the value)";
      break;
    }
  }
  if (failure.empty() && plan.conf_changes()) {
    if (auto e = sys::atomic_write(o.sysctl_conf, plan.conf_after, entry.conf_mode); !e.empty()) failure = e;
  }
  if (!failure.empty()) {
    auto not_restored = restore_values(written);
    sys::remove_file(jpath);
    held.finish();
    out["restored"] = written.size() - not_restored.size();
    out["not_restored"] = not_restored;
    std::vector<std::string> errors{"apply failed: " + failure};
    if (!o.json) {
      errors.push_back("  rolled back: restored " + std::to_string(written.size() - not_restored.size()) + " of " +
                       std::to_string(written.size()) + " value(s) written; " + o.sysctl_conf + " left untouched");
      for (const auto& n : not_restored) errors.push_back("  NOT restored: " + n);
    }
    return fail(o, out, kFailed, errors, "rolled-back");
  }
  entry.state = "committed";
  if (auto e = sys::atomic_write(jpath, journal_to_json(entry), 0600); !e.empty())
    warnings.push_back("journal " + jpath + " still says pending: " + e);
  int sig = held.finish();
  out["status"] = "applied";
  out["journal_id"] = entry.id;
  out["warnings"] = warnings;
  if (sig) out["interrupted_by"] = signal_name(sig);
  if (o.json) {
    emit_json(out);
  } else {
    print_plan(false);
    std::cout << "applied " << entry.values.size() << " value(s); " << o.sysctl_conf
              << (plan.conf_changes() ? " updated (managed block)" : " already up to date") << "; journal entry " << entry.id
              << " in " << journal_dir(o) << "\n";
  }
  if (sig) {
    err(signal_name(sig) + " arrived during the apply; it was completed first (journal entry " + std::to_string(entry.id) +
        "); `tcptune rollback` undoes it");
    return 128 + sig;
  }
  return kOk;
}

std::vector<BootFile> gather_boot_files(const Options& o, const std::string& conf_text, bool* linked) {
  auto conf_real = sys::real_path(o.sysctl_conf);
  std::vector<BootFile> cands;
  const auto& dirs = o.sysctl_d.empty() ? kDefaultSysctlD : o.sysctl_d;
  for (const auto& d : dirs) {
    for (const auto& name : sys::list_dir(d)) {
      if (!name.ends_with(".conf")) continue;
      BootFile f;
      f.path = d + "/" + name;
      f.name = name;
      auto real = sys::real_path(f.path);
      f.is_conf = !conf_real.empty() && real == conf_real;
      if (!f.is_conf) {
        auto data = sys::read_file(f.path);
        f.text = data.text;
      }
      cands.push_back(std::move(f));
    }
  }
  BootFile conf;
  conf.path = o.sysctl_conf;
  conf.name = "sysctl.conf";
  conf.text = conf_text;
  return boot_order(std::move(cands), conf, linked);
}

int cmd_verify(const Options& o) {
  json out;
  out["command"] = "verify";
  std::vector<std::string> warnings;
  auto profile = load(o, out, warnings);
  if (!profile) return kUsage;
  if (auto e = sys::regular_file_error(o.sysctl_conf); !e.empty()) return fail(o, out, kUsage, {e});
  if (auto e = enter(o); !e.empty()) return fail(o, out, kUsage, {e});
  auto conf = sys::read_file(o.sysctl_conf);
  if (!conf.error.empty()) return fail(o, out, kUsage, {conf.error});
  // A broken managed block cannot be compared with anything: an input error, as for apply.
  if (auto parsed = parse_conf(conf.text); !parsed.error.empty()) return fail(o, out, kUsage, {o.sysctl_conf + ": " + parsed.error});
  auto journal = load_journal(o.state_dir);
  if (!journal.error.empty()) return fail(o, out, kUsage, {journal.error});
  if (const auto* p = journal.pending()) warnings.push_back(interrupted_note(*p));
  auto history = journal.history(o.netns, o.sysctl_conf);
  auto live = read_live(*profile);
  for (const auto& k : journal_keys(history))
    if (!live.count(k)) live[k] = sys::read_sysctl(k);
  bool linked = false;
  auto order = gather_boot_files(o, conf.text, &linked);
  auto rep = compute_drift(*profile, live, o.sysctl_conf, conf.text, order, linked, history);
  warnings.insert(warnings.end(), rep.warnings.begin(), rep.warnings.end());
  out["profile"] = profile->name;
  out["netns"] = o.netns;
  out["drift"] = rep.drift;
  out["warnings"] = warnings;
  out["keys"] = json::array();
  for (const auto& r : rep.rows) {
    out["keys"].push_back({{"key", r.key},
                           {"profile", r.want},
                           {"live", r.live ? json(*r.live) : json(nullptr)},
                           {"persisted", r.persisted ? json(*r.persisted) : json(nullptr)},
                           {"boot", r.boot ? json(r.boot->value) : json(nullptr)},
                           {"boot_source", r.boot ? json(r.boot->path + ":" + std::to_string(r.boot->line)) : json(nullptr)},
                           {"ok", r.ok()},
                           {"in_profile", !r.stale},
                           {"note", r.note}});
  }
  if (o.json) {
    emit_json(out);
    return rep.drift ? kFailed : kOk;
  }
  size_t wk = 3, wp = 7, wl = 4, wb = 7;
  auto show = [](const std::optional<std::string>& v) { return v ? *v : std::string("-"); };
  for (const auto& r : rep.rows) {
    wk = std::max(wk, r.key.size());
    wp = std::max(wp, r.want.size());
    wl = std::max(wl, show(r.live).size());
    wb = std::max(wb, show(r.persisted).size());
  }
  auto pad = [](const std::string& s, size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); };
  std::cout << pad("KEY", wk) << "  " << pad("PROFILE", wp) << "  " << pad("LIVE", wl) << "  " << pad("CONF", wb) << "  STATUS\n";
  for (const auto& r : rep.rows) {
    std::string status = r.ok() ? "ok" : "DRIFT";
    std::vector<std::string> what;
    if (r.stale) what.push_back("not persisted");
    else if (!r.live_ok) what.push_back("live");
    if (!r.persisted_ok && !r.stale) what.push_back("conf");
    if (!r.boot_ok && r.persisted_ok && !r.stale) what.push_back("boot");
    if (!what.empty()) {
      status += " (";
      for (size_t i = 0; i < what.size(); ++i) status += (i ? "," : "") + what[i];
      status += ")";
    }
    if (!r.note.empty() && !r.ok()) status += ": " + r.note;
    std::cout << pad(r.key, wk) << "  " << pad(r.want, wp) << "  " << pad(show(r.live), wl) << "  " << pad(show(r.persisted), wb)
              << "  " << status << "\n";
  }
  for (const auto& w : warnings) std::cout << "warning: " << w << "\n";
  std::cout << (rep.drift ? "drift found\n" : "no drift: live values, " + o.sysctl_conf + " and boot order match the profile\n");
  return rep.drift ? kFailed : kOk;
}

int cmd_rollback(const Options& o) {
  json out;
  out["command"] = "rollback";
  out["netns"] = o.netns;
  out["sysctl_conf"] = o.sysctl_conf;
  if (!o.netns.empty() && !o.conf_given)
    return fail(o, out, kUsage,
                {"--netns " + o.netns + " needs an explicit --sysctl-conf: rollback undoes the entries of one file and namespace"});
  if (auto e = sys::regular_file_error(o.sysctl_conf); !e.empty()) return fail(o, out, kUsage, {e});
  if (!o.dry_run)
    if (auto e = prepare_state_dir(o); !e.empty()) return fail(o, out, kUsage, {e});
  auto journal = load_journal(o.state_dir);
  if (!journal.error.empty()) return fail(o, out, kUsage, {journal.error});
  // Scoped to the file and namespace given: entries made for another file are not this rollback's.
  auto scope = journal.scope(o.netns, o.sysctl_conf);
  if (scope.empty()) {
    std::string where = o.sysctl_conf + (o.netns.empty() ? " in the host namespace" : " in netns " + o.netns);
    std::vector<std::string> errors{"nothing to roll back for " + where + " (no journal entries for it in " + journal_dir(o) + ")"};
    for (const auto& s : journal.active)
      errors.push_back("  entry " + std::to_string(s.entry.id) + " (" + s.entry.profile + ") is for " + s.entry.conf_path +
                       (s.entry.netns.empty() ? "" : " in netns " + s.entry.netns) + ": roll it back with --sysctl-conf " +
                       s.entry.conf_path + (s.entry.netns.empty() ? "" : " --netns " + s.entry.netns));
    return fail(o, out, kUsage, errors, "nothing-to-roll-back");
  }
  const Stored* last = scope.back();
  const auto& e = last->entry;
  // A later entry for another file in the same namespace that changed the same keys must go first,
  // or this rollback would pull its values from under it.
  for (const auto& later : journal.active) {
    if (later.entry.id <= e.id || later.entry.netns != e.netns || same_file(later.entry.conf_path, e.conf_path)) continue;
    for (const auto& v : later.entry.values)
      for (const auto& mine : e.values)
        if (v.key == mine.key)
          return fail(o, out, kUsage,
                      {"entry " + std::to_string(later.entry.id) + " (" + later.entry.profile + ", " + later.entry.conf_path +
                       ") was applied later and also changed " + v.key + "; roll it back first (--sysctl-conf " +
                       later.entry.conf_path + ")"});
  }
  if (auto err_enter = enter(o); !err_enter.empty()) return fail(o, out, kUsage, {err_enter});
  auto cur = sys::read_file(e.conf_path);
  if (!cur.error.empty()) return fail(o, out, kUsage, {cur.error});
  // Restore the file exactly when nobody touched it since; otherwise swap back only our block.
  std::string file_note;
  std::optional<std::string> new_text;
  bool remove = false;
  if (cur.exists && cur.text == e.conf_after) {
    if (e.conf_existed)
      new_text = e.conf_before;
    else
      remove = true;
    file_note = "restored byte for byte";
  } else if ((cur.exists || !e.conf_existed) && cur.text == e.conf_before && cur.exists == e.conf_existed) {
    file_note = "already as before";
  } else {
    auto edit = replace_block(cur.text, block_text(e.conf_before));
    if (!edit.error.empty()) return fail(o, out, kUsage, {e.conf_path + ": " + edit.error});
    new_text = edit.text;
    file_note = "changed since the apply: only the managed block was restored";
  }
  out["journal_id"] = e.id;
  out["profile"] = e.profile;
  out["conf"] = e.conf_path;
  out["conf_note"] = file_note;
  json vals = json::array();
  for (const auto& v : e.values) vals.push_back({{"key", v.key}, {"from", v.after}, {"to", v.before}});
  out["values"] = vals;
  if (o.dry_run) {
    out["status"] = "dry-run";
    if (o.json) {
      emit_json(out);
    } else {
      std::cout << "would roll back entry " << e.id << " (" << e.profile << ", " << e.time << "):\n";
      for (const auto& v : e.values) std::cout << "  " << v.key << "  " << sys::read_sysctl(v.key).value << " -> " << v.before << "\n";
      std::cout << "  " << e.conf_path << ": " << (remove ? "removed (did not exist before)" : file_note) << "\n";
      if (new_text) std::cout << unified_diff(cur.text, *new_text, e.conf_path, e.conf_path + " (after rollback)");
      std::cout << "(dry run: nothing written)\n";
    }
    return kOk;
  }
  sys::HeldSignals held;
  auto failed = restore_values(e.values);
  std::string ferr;
  if (remove)
    ferr = sys::remove_file(e.conf_path);
  else if (new_text)
    ferr = sys::atomic_write(e.conf_path, *new_text, cur.exists ? cur.mode : e.conf_mode);
  if (!ferr.empty()) failed.push_back(ferr);
  if (!failed.empty()) {
    held.finish();
    std::vector<std::string> errors;
    if (!o.json) err("rollback of entry " + std::to_string(e.id) + " incomplete (the entry is kept; fix and run rollback again):");
    for (const auto& f : failed) errors.push_back(o.json ? f : "  " + f);
    return fail(o, out, kFailed, errors);
  }
  std::string dest = journal_dir(o) + "/rolled-back/" + journal_file_name(e.id);
  if (auto me = sys::atomic_write(dest, journal_to_json(e), 0600); me.empty()) sys::remove_file(last->path);
  int sig = held.finish();
  out["status"] = "rolled-back";
  if (sig) out["interrupted_by"] = signal_name(sig);
  if (o.json)
    emit_json(out);
  else
    std::cout << "rolled back entry " << e.id << " (" << e.profile << " applied " << e.time << "): " << e.values.size()
              << " value(s) restored; " << e.conf_path << " " << (remove ? "removed (did not exist before)" : file_note) << "\n";
  if (sig) {
    err(signal_name(sig) + " arrived during the rollback; it was completed first");
    return 128 + sig;
  }
  return kOk;
}

int cmd_show(const Options& o) {
  json fout{{"command", "show"}, {"netns", o.netns}};
  if (auto e = enter(o); !e.empty()) return fail(o, fout, kUsage, {e});
  std::vector<std::string> keys;
  bool explicit_keys = !o.keys.empty();
  if (explicit_keys) {
    for (const auto& k : o.keys) keys.push_back(normalize_key(k));
  } else {
    for (const auto& d : registry()) {
      if (d.status != Status::Active) continue;
      auto star = d.name.find('*');
      if (star == std::string::npos) {
        keys.push_back(d.name);
      } else {
        for (const char* which : {"all", "default"}) keys.push_back(d.name.substr(0, star) + which + d.name.substr(star + 1));
      }
    }
  }
  json arr = json::array();
  int rc = kOk;
  size_t w = 0;
  for (const auto& k : keys) w = std::max(w, k.size());
  for (const auto& k : keys) {
    auto v = sys::read_sysctl(k);
    const KeyDef* def = find_key(k);
    if (!v.present && explicit_keys) rc = kUsage;
    if (!v.present && !explicit_keys) continue;  // e.g. conntrack keys without nf_conntrack loaded
    json j{{"key", k}, {"value", v.present ? json(v.value) : json(nullptr)}};
    if (!v.present) j["error"] = v.error;
    if (def) {
      j["scope"] = scope_name(def->scope);
      j["type"] = kind_name(def->kind);
      j["doc"] = def->doc;
      if (def->status != Status::Active) j["refused"] = def->reason;
    }
    arr.push_back(j);
    if (!o.json) {
      std::string line = k + std::string(w - k.size() + 2, ' ') + (v.present ? v.value : "(" + v.error + ")");
      if (def) line += "   [" + std::string(scope_name(def->scope)) + "] " + def->doc;
      else line += "   [not in registry]";
      std::cout << line << "\n";
    }
  }
  if (arr.empty()) return fail(o, fout, kFailed, {"no registry key could be read under /proc/sys here"});
  if (o.json) emit_json({{"command", "show"}, {"netns", o.netns}, {"keys", arr}});
  return rc;
}

int cmd_profiles(const Options& o) {
  auto src = profile_source(o);
  json arr = json::array();
  std::set<std::string> seen;
  for (const auto& d : src.search_dirs) {
    for (const auto& name : sys::list_dir(d)) {
      if (!name.ends_with(".toml")) continue;
      std::string stem = name.substr(0, name.size() - 5);
      if (!seen.insert(stem).second) continue;  // an earlier directory shadows it
      std::string path = d + "/" + name;
      auto data = sys::read_file(path);
      std::string e;
      auto h = read_header(data.text, path, &e);
      json j{{"name", stem}, {"path", path}};
      if (h) {
        j["description"] = h->description;
        j["extends"] = h->extends;
        auto full = load_profile(path, src);
        j["keys"] = full.profile ? full.profile->settings.size() : 0;
        if (!full.profile) j["errors"] = full.errors;
      } else {
        j["errors"] = json::array({e});
      }
      arr.push_back(j);
    }
  }
  bool invalid = std::any_of(arr.begin(), arr.end(), [](const json& j) { return j.contains("errors"); });
  if (o.json) {
    emit_json({{"command", "profiles"}, {"profiles", arr}});
    return invalid ? kFailed : kOk;
  }
  for (const auto& j : arr) {
    std::cout << j["name"].get<std::string>();
    if (j.contains("extends") && !j["extends"].get<std::string>().empty()) std::cout << " (extends " << j["extends"].get<std::string>() << ")";
    if (j.contains("keys")) std::cout << ", " << j["keys"].get<size_t>() << " keys";
    std::cout << "\n    " << j["path"].get<std::string>() << "\n";
    if (j.contains("description")) std::cout << "    " << j["description"].get<std::string>() << "\n";
    if (j.contains("errors"))
      for (const auto& e : j["errors"]) std::cout << "    INVALID: " << e.get<std::string>() << "\n";
  }
  return invalid ? kFailed : kOk;
}

int cmd_diagnose(const Options& o) {
  json fout{{"command", "diagnose"}, {"netns", o.netns}};
  if (auto e = enter(o); !e.empty()) return fail(o, fout, kUsage, {e});
  DiagInput in;
  in.thresholds = o.thresholds;
  for (const char* k : {"net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn", "net.ipv4.tcp_max_tw_buckets",
                        "net.ipv4.ip_local_port_range", "net.ipv4.tcp_synack_retries"}) {
    auto v = sys::read_sysctl(k);
    if (v.present) in.sysctl[k] = v.value;
  }
  Counters first;
  if (o.interval > 0) {
    first = sys::read_counters();
    if (int sig = sys::sleep_unless_signalled(o.interval)) {
      fail(o, fout, 128 + sig, {signal_name(sig) + ": interrupted during the " + std::to_string(o.interval) + " s sample; nothing to report"},
           "interrupted");
      return 128 + sig;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  auto scan = sys::scan_tcp(true);
  auto t1 = std::chrono::steady_clock::now();
  if (!scan.error.empty()) return fail(o, fout, kFailed, {scan.error});
  in.counts = scan.counts;
  in.listeners = scan.listeners;
  in.counters = sys::read_counters();
  if (o.interval > 0) {
    Counters d;
    for (const auto& [k, v] : in.counters) d[k] = v - (first.count(k) ? first[k] : 0);
    in.delta = d;
    in.interval_s = o.interval;
  }
  if (scan.close_wait_inodes.size() >= in.thresholds.close_wait) in.close_wait_owners = sys::socket_owners(scan.close_wait_inodes);
  auto findings = diagnose(in);
  bool serious = false;
  for (const auto& f : findings)
    if (f.severity != Severity::Info) serious = true;
  double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  static constexpr int order[] = {10, 3, 1, 8, 6, 4, 5, 9, 11, 2, 7};
  if (o.json) {
    json states;
    for (int s : order) states[std::string(state_name(s))] = {{"ipv4", in.counts.v4[s] + (s == 3 ? in.counts.v4[12] : 0)},
                                                             {"ipv6", in.counts.v6[s] + (s == 3 ? in.counts.v6[12] : 0)},
                                                             {"total", in.counts.get(s)}};
    json counters;
    for (const char* k : {"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.SyncookiesSent", "TcpExt.SyncookiesRecv",
                          "TcpExt.SyncookiesFailed", "TcpExt.TCPReqQFullDrop", "TcpExt.TCPReqQFullDoCookies",
                          "TcpExt.TCPTimeWaitOverflow", "TcpExt.TCPMemoryPressures", "TcpExt.TCPAbortOnMemory", "Tcp.CurrEstab",
                          "Tcp.PassiveOpens", "Tcp.ActiveOpens", "Tcp.AttemptFails"}) {
      auto it = in.counters.find(k);
      if (it != in.counters.end()) counters[k] = in.delta ? json{{"total", it->second}, {"delta", (*in.delta)[k]}} : json(it->second);
    }
    json fs = json::array();
    for (const auto& f : findings)
      fs.push_back({{"id", f.id}, {"severity", severity_name(f.severity)}, {"title", f.title}, {"detail", f.detail}, {"advice", f.advice},
                    {"profile", f.profile}});
    json ls = json::array();
    for (const auto& l : in.listeners) ls.push_back({{"local", l.local}, {"accept_queue", l.accept_queue}, {"backlog", l.backlog}});
    json owners = json::array();
    for (const auto& w : in.close_wait_owners) owners.push_back({{"pid", w.pid}, {"comm", w.comm}, {"close_wait", w.count}});
    emit_json({{"command", "diagnose"}, {"netns", o.netns}, {"sockets", in.counts.total()}, {"scan_ms", ms}, {"states", states},
               {"listeners", ls}, {"close_wait_owners", owners}, {"counters", counters}, {"sysctl", in.sysctl}, {"findings", fs}});
    return serious ? kFailed : kOk;
  }
  std::cout << "TCP sockets" << (o.netns.empty() ? "" : " in netns " + o.netns) << ": " << in.counts.total() << " (sock_diag scan "
            << static_cast<long>(ms * 1000) / 1000.0 << " ms)\n";
  std::printf("  %-12s %10s %10s %10s\n", "STATE", "IPv4", "IPv6", "TOTAL");
  for (int s : order) {
    auto v4 = in.counts.v4[s] + (s == 3 ? in.counts.v4[12] : 0), v6 = in.counts.v6[s] + (s == 3 ? in.counts.v6[12] : 0);
    std::printf("  %-12s %10llu %10llu %10llu\n", std::string(state_name(s)).c_str(), static_cast<unsigned long long>(v4),
                static_cast<unsigned long long>(v6), static_cast<unsigned long long>(in.counts.get(s)));
  }
  std::cout << "counters " << (in.delta ? "(change in the last " + std::to_string(o.interval) + " s)" : "(since boot or netns creation)")
            << ":\n";
  for (const char* k : {"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.SyncookiesSent", "TcpExt.SyncookiesRecv",
                        "TcpExt.SyncookiesFailed", "TcpExt.TCPReqQFullDrop", "TcpExt.TCPReqQFullDoCookies"}) {
    const Counters& c = in.delta ? *in.delta : in.counters;
    auto it = c.find(k);
    std::printf("  %-28s %lld\n", k, it == c.end() ? 0LL : static_cast<long long>(it->second));
  }
  if (findings.empty()) {
    std::cout << "no findings\n";
    return kOk;
  }
  for (const auto& f : findings) {
    std::cout << "[" << severity_name(f.severity) << "] " << f.id << ": " << f.title << "\n    " << f.detail << "\n    advice: " << f.advice
              << "\n";
    if (!f.profile.empty()) std::cout << "    profile: tcptune apply " << f.profile << "\n";
  }
  return serious ? kFailed : kOk;
}

// The active profile of each (netns, sysctl.conf) and what tcptune changed there, from the journals:
// the host's state dir and every namespace's under it, or the one state dir given.
int cmd_status(const Options& o) {
  json out{{"command", "status"}};
  // Without --netns: DIR and the per-namespace dirs under DIR/netns/, the layout of the defaults.
  std::vector<std::string> dirs{o.state_dir};
  if (o.netns.empty())
    for (const auto& name : sys::list_dir(o.state_dir + "/netns")) dirs.push_back(o.state_dir + "/netns/" + name);
  json scopes = json::array();
  std::vector<std::string> errors;
  for (const auto& dir : dirs) {
    auto journal = load_journal(dir);
    if (!journal.error.empty()) {
      errors.push_back(journal.error);
      continue;
    }
    std::vector<JournalEntry> entries;
    for (const auto& st : journal.active) entries.push_back(st.entry);
    auto summary = summarize(entries);
    for (const auto& sc : summary) {
      if (!o.netns.empty() && sc.netns != o.netns) continue;
      auto conf = sys::read_file(sc.conf_path);
      auto parsed = parse_conf(conf.text);
      std::string block = !conf.error.empty() ? "" : parsed.block.present ? parsed.block.profile : "";
      json changed = json::array();
      for (const auto& c : sc.changed)
        changed.push_back({{"key", c.key}, {"before", c.before ? json(*c.before) : json(nullptr)}, {"now", c.now}, {"by", c.by}});
      scopes.push_back({{"netns", sc.netns},
                        {"sysctl_conf", sc.conf_path},
                        {"state_dir", dir},
                        {"profile", sc.latest.profile},
                        {"journal_id", sc.latest.id},
                        {"applied", sc.latest.time},
                        {"entries", sc.entries},
                        {"interrupted", sc.interrupted},
                        {"block_profile", block},
                        {"changed", changed}});
    }
  }
  out["scopes"] = scopes;
  if (!errors.empty()) return fail(o, out, kFailed, errors);
  if (o.json) {
    emit_json(out);
    return kOk;
  }
  if (scopes.empty()) {
    std::string where;
    for (const auto& d : dirs) where += (where.empty() ? "" : ", ") + d;
    std::cout << "no profile applied" << (o.netns.empty() ? "" : " in netns " + o.netns) << " (no active journal entries in " << where
              << ")\n";
    return kOk;
  }
  for (const auto& sc : scopes) {
    std::string ns = sc["netns"];
    std::string conf = sc["sysctl_conf"], block = sc["block_profile"], profile = sc["profile"];
    std::cout << (ns.empty() ? "host namespace" : "netns " + ns) << ": profile " << profile << " (entry " << sc["journal_id"].get<unsigned long>()
              << ", applied " << sc["applied"].get<std::string>() << "; " << sc["entries"].get<size_t>() << " active "
              << (sc["entries"].get<size_t>() == 1 ? "entry" : "entries") << " in " << sc["state_dir"].get<std::string>() << ")\n";
    if (sc["interrupted"].get<bool>())
      std::cout << "  INTERRUPTED: an apply did not finish; run `tcptune rollback` to undo what it wrote\n";
    std::cout << "  persisted in " << conf << ": "
              << (block == profile ? "managed block holds " + profile
                                   : block.empty() ? std::string("NO managed block (removed by hand?)") : "managed block holds " + block + ", not " + profile)
              << "\n";
    if (sc["changed"].empty()) {
      std::cout << "  no value differs from before tcptune\n";
      continue;
    }
    std::cout << "  changed by tcptune (before tcptune -> now):\n";
    size_t w = 0;
    for (const auto& c : sc["changed"]) w = std::max(w, c["key"].get<std::string>().size());
    for (const auto& c : sc["changed"]) {
      std::string key = c["key"];
      std::string before = c["before"].is_null() ? "(unknown)" : c["before"].get<std::string>();
      std::cout << "    " << key << std::string(w - key.size() + 2, ' ') << before << " -> " << c["now"].get<std::string>();
      if (c["by"].get<std::string>() != profile) std::cout << "   (by " << c["by"].get<std::string>() << ")";
      std::cout << "\n";
    }
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "tcptune: apply, verify, diff and roll back TCP sysctl profiles; diagnose TCP socket state.\n"
      "Exit codes: 0 done; 1 ran but failed or found something (apply failed and was rolled back, diff shows\n"
      "apply would fail, verify found drift, diagnose has warning/critical findings, rollback incomplete);\n"
      "2 usage or input error, nothing changed (bad option or number, invalid netns name or profile, sysctl.conf\n"
      "not a regular file, broken managed block, corrupt journal, nothing to roll back); 128+N: stopped by signal N,\n"
      "said so on stderr. With --json, errors are also reported on stdout as {\"status\", \"errors\"}."};
  app.footer(
      "PROFILE is a path (containing '/' or ending in .toml) or the name of a shipped profile (see `tcptune profiles`).\n"
      "Examples:\n"
      "  tcptune diff syn-flood-defense          what would change, nothing written\n"
      "  tcptune apply syn-flood-defense         apply, persist in /etc/sysctl.conf, journal the old values\n"
      "  tcptune verify syn-flood-defense        drift table; exit 1 on drift\n"
      "  tcptune rollback                        undo the latest apply (repeat to go further back)\n"
      "  tcptune status                          active profile per namespace and what it changed\n"
      "  tcptune --netns lab-gw --sysctl-conf /tmp/gw.conf apply gateway\n"
      "  tcptune diagnose --interval 5           socket states, counters, findings over 5 s\n"
      "Options may follow the subcommand. Operator guide: docs/tcptune.md");
  app.set_version_flag("--version", std::string("tcptune ") + TCPTUNE_VERSION);
  app.require_subcommand(1, 1);
  app.fallthrough();
  app.add_option("--sysctl-conf", o.sysctl_conf, "sysctl.conf holding the managed block (absent, a regular file or a symlink to one)")
      ->capture_default_str();
  app.add_option("--state-dir", o.state_dir, "journal directory (default /var/lib/tcptune, or /var/lib/tcptune/netns/NAME with --netns)");
  app.add_option("--netns", o.netns, "act inside the network namespace /var/run/netns/NAME; host-wide keys are refused; an empty or invalid NAME is a usage error");
  app.add_option("--sysctl-d", o.sysctl_d,
                 "sysctl.d directory to check for lines that win at boot (repeatable, in priority order; default "
                 "/etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d)");
  app.add_option("--profile-dir", o.profile_dirs, "extra directory with profiles, searched first (repeatable)");
  app.add_flag("--dry-run", o.dry_run, "show what apply or rollback would do, write nothing");
  app.add_flag("--json", o.json, "machine-readable output");

  auto* apply = app.add_subcommand("apply", "apply PROFILE: validate, write live values, persist in sysctl.conf, journal");
  apply->add_option("profile", o.profile, "profile path or shipped profile name")->required();
  auto* verify = app.add_subcommand("verify", "verify PROFILE: drift of live values, sysctl.conf and boot order (exit 1 on drift)");
  verify->add_option("profile", o.profile, "profile path or shipped profile name")->required();
  auto* diff = app.add_subcommand("diff", "diff PROFILE: what apply would change, values and file; writes nothing");
  diff->add_option("profile", o.profile, "profile path or shipped profile name")->required();
  app.add_subcommand("rollback", "undo the latest apply of this --sysctl-conf and --netns (values and file); repeat to step further back");
  auto* show = app.add_subcommand("show", "show [KEY...]: live values with type, scope and meaning");
  show->add_option("keys", o.keys, "sysctl keys (default: every registry key present)");
  auto* diagnose_cmd = app.add_subcommand("diagnose", "count TCP states via sock_diag, read kernel counters, report findings");
  diagnose_cmd->add_option("--interval", o.interval_arg,
                           "sample counters over SEC seconds (0 < SEC <= 3600, plain decimal) and judge the change, not totals since boot");
  diagnose_cmd->add_option("--syn-recv-threshold", o.syn_recv_arg, "SYN_RECV sockets that suggest a SYN flood (default 128)");
  diagnose_cmd->add_option("--close-wait-threshold", o.close_wait_arg, "CLOSE_WAIT sockets that suggest a leak (default 64)");
  diagnose_cmd->add_option("--time-wait-threshold", o.time_wait_arg, "TIME_WAIT sockets worth a finding (default: half the port range)");
  app.add_subcommand("profiles", "list shipped profiles (exit 1 if one is invalid)");
  app.add_subcommand("status", "the active profile per namespace and sysctl.conf, and what it changed (from the journals)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    bool want_json = false;
    for (int i = 1; i < argc; ++i) want_json |= std::string_view(argv[i]) == "--json";
    if (want_json) emit_json({{"status", "usage-error"}, {"errors", json::array({e.what()})}, {"exit_code", kUsage}});
    return kUsage;
  }
  o.command = app.get_subcommands().front()->get_name();
  // Checked before anything runs: a wrapped -1, a NaN or an empty netns name must never be used.
  std::vector<std::string> usage;
  if (app.count("--netns"))
    if (auto e = netns_name_error(o.netns); !e.empty()) usage.push_back("--netns '" + o.netns + "': " + e);
  if (!o.interval_arg.empty() || diagnose_cmd->count("--interval")) {
    if (auto v = parse_seconds(o.interval_arg))
      o.interval = *v;
    else
      usage.push_back("--interval '" + o.interval_arg + "': seconds above 0 and at most 3600, plain decimal (e.g. 5 or 0.5)");
  }
  auto count_arg = [&](const char* name, const std::string& arg, auto assign) {
    if (!diagnose_cmd->count(name)) return;
    if (auto v = parse_count(arg))
      assign(*v);
    else
      usage.push_back(std::string(name) + " '" + arg + "': a count, 0 or more, in decimal digits");
  };
  count_arg("--syn-recv-threshold", o.syn_recv_arg, [&](std::uint64_t v) { o.thresholds.syn_recv = v; });
  count_arg("--close-wait-threshold", o.close_wait_arg, [&](std::uint64_t v) { o.thresholds.close_wait = v; });
  count_arg("--time-wait-threshold", o.time_wait_arg, [&](std::uint64_t v) { o.thresholds.time_wait = v; });
  if (!usage.empty()) {
    json out{{"command", o.command}};
    return fail(o, out, kUsage, usage, "usage-error");
  }
  o.conf_given = app.count("--sysctl-conf") > 0;
  o.state_given = app.count("--state-dir") > 0;
  if (!o.netns.empty() && !o.state_given) o.state_dir = "/var/lib/tcptune/netns/" + o.netns;
  // The journal records the conf path; make it absolute so rollback works from any directory.
  o.sysctl_conf = std::filesystem::absolute(o.sysctl_conf).lexically_normal().string();
  o.state_dir = std::filesystem::absolute(o.state_dir).lexically_normal().string();
  for (auto& d : o.sysctl_d) d = std::filesystem::absolute(d).lexically_normal().string();
  try {
    if (o.command == "apply") return cmd_apply(o, false);
    if (o.command == "diff") return cmd_apply(o, true);
    if (o.command == "verify") return cmd_verify(o);
    if (o.command == "rollback") return cmd_rollback(o);
    if (o.command == "show") return cmd_show(o);
    if (o.command == "diagnose") return cmd_diagnose(o);
    if (o.command == "profiles") return cmd_profiles(o);
    if (o.command == "status") return cmd_status(o);
  } catch (const std::exception& e) {
    json out{{"command", o.command}};
    return fail(o, out, kFailed, {std::string("internal error: ") + e.what()});
  }
  return kUsage;
}
