// SYN cookie engine: cookie round trips, every way a cookie must fail, key rotation, forgery odds,
// timestamp option bits, and the secrets file.
//
// Keys and random inputs come from fixed seeds, so every run checks the same cookies: a test that
// depends on a 2^-26 event not happening either always passes or always fails, never flakes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "syngate/cookie.hpp"

namespace syngate {
namespace {

namespace fs = std::filesystem;

// Addresses built byte by byte (v4-mapped for IPv4, as Address stores them), so these tests do
// not lean on the parsing helpers they are not about.
Address v4(uint32_t host_order) {
  Address a;
  a.bytes[10] = 0xff;
  a.bytes[11] = 0xff;
  for (int i = 0; i < 4; ++i) a.bytes[12 + i] = static_cast<uint8_t>(host_order >> (24 - 8 * i));
  return a;
}

Address random_v6(std::mt19937_64& rng) {
  Address a;
  for (auto& b : a.bytes) b = static_cast<uint8_t>(rng());
  a.bytes[0] = 0x20;  // global unicast 2000::/3: never the v4-mapped prefix
  return a;
}

FlowTuple random_v4_tuple(std::mt19937_64& rng) {
  return {v4(static_cast<uint32_t>(rng())), v4(static_cast<uint32_t>(rng())),
          static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng())};
}

FlowTuple random_v6_tuple(std::mt19937_64& rng) {
  return {random_v6(rng), random_v6(rng), static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng())};
}

CookieKey key_from(uint64_t seed) {
  std::mt19937_64 rng(seed);
  CookieKey k{};
  for (auto& b : k) b = static_cast<uint8_t>(rng());
  return k;
}

CookieSecrets fixed_secrets(uint32_t since = 0) {
  return {key_from(1), key_from(2), since};
}

// A realistic counter (today's clock in 64 s ticks is about 2^25) or anything at all.
uint32_t random_counter(std::mt19937_64& rng) {
  return (rng() & 1) ? static_cast<uint32_t>(rng()) : 27'000'000u + static_cast<uint32_t>(rng() % 1'000'000);
}

// ---- MSS table -------------------------------------------------------------------------------

TEST(CookieMss, IndexRoundsDownToTheLargestEntryNotAbove) {
  for (uint32_t mss = 0; mss <= 0xFFFF; ++mss) {
    const uint8_t i = cookie_mss_index(static_cast<uint16_t>(mss));
    ASSERT_LT(i, kCookieMssTable.size());
    if (mss < kCookieMssTable[0]) {
      ASSERT_EQ(i, 0) << mss;
      continue;
    }
    ASSERT_LE(kCookieMssTable[i], mss) << "rounded up: " << mss;
    if (i + 1u < kCookieMssTable.size()) {
      ASSERT_GT(kCookieMssTable[i + 1], mss) << "not the largest: " << mss;
    }
  }
}

TEST(CookieMss, TableEntriesMapToThemselves) {
  for (size_t i = 0; i < kCookieMssTable.size(); ++i) EXPECT_EQ(cookie_mss_index(kCookieMssTable[i]), i);
}

// ---- Round trips -----------------------------------------------------------------------------

void expect_round_trips(bool v6) {
  std::mt19937_64 rng(v6 ? 66 : 44);
  for (uint32_t max_age = 0; max_age <= 3; ++max_age) {
    CookieJar jar(fixed_secrets(), max_age);
    for (int n = 0; n < 20000; ++n) {
      const FlowTuple t = v6 ? random_v6_tuple(rng) : random_v4_tuple(rng);
      const auto isn = static_cast<uint32_t>(rng());
      const auto mss = static_cast<uint16_t>(rng());
      const uint32_t made_at = random_counter(rng);
      const uint32_t cookie = jar.make(t, isn, mss, made_at);
      const uint32_t age = static_cast<uint32_t>(rng() % (max_age + 1));
      const auto got = jar.check(t, isn, cookie, made_at + age);
      ASSERT_TRUE(got.has_value()) << "n=" << n << " age=" << age << " max_age=" << max_age;
      ASSERT_EQ(*got, kCookieMssTable[cookie_mss_index(mss)]) << "mss " << mss;
    }
  }
}

TEST(Cookie, RoundTripV4) { expect_round_trips(false); }
TEST(Cookie, RoundTripV6) { expect_round_trips(true); }

TEST(Cookie, CommonMssValuesSurviveExactly) {
  CookieJar jar(fixed_secrets());
  std::mt19937_64 rng(7);
  for (uint16_t mss : {536, 1220, 1260, 1460, 8960}) {
    for (int n = 0; n < 100; ++n) {
      const FlowTuple t = (n & 1) ? random_v6_tuple(rng) : random_v4_tuple(rng);
      const auto isn = static_cast<uint32_t>(rng());
      const uint32_t cookie = jar.make(t, isn, mss, 1000);
      EXPECT_EQ(jar.check(t, isn, cookie, 1000), mss);
    }
  }
}

TEST(Cookie, TinyMssBecomesTheSmallestEntry) {
  CookieJar jar(fixed_secrets());
  std::mt19937_64 rng(8);
  for (uint16_t mss : {0, 1, 88, 215}) {
    const FlowTuple t = random_v4_tuple(rng);
    const uint32_t cookie = jar.make(t, 5, mss, 1000);
    EXPECT_EQ(jar.check(t, 5, cookie, 1000), 216) << mss;
  }
}

TEST(Cookie, LayoutCarriesCounterAndMssInTheLowBits) {
  CookieJar jar(fixed_secrets());
  std::mt19937_64 rng(9);
  for (uint32_t c = 1000; c < 1008; ++c) {
    const uint32_t cookie = jar.make(random_v4_tuple(rng), 1, 1260, c);
    EXPECT_EQ((cookie >> 4) & 3, c & 3);
    EXPECT_EQ(kCookieMssTable[cookie & 0xF], 1260);
  }
}

TEST(Cookie, MaxAgeIsClampedToWhatTheCookieCanExpress) {
  EXPECT_EQ(CookieJar(fixed_secrets(), 0).max_age(), 0u);
  EXPECT_EQ(CookieJar(fixed_secrets(), 3).max_age(), 3u);
  EXPECT_EQ(CookieJar(fixed_secrets(), 9).max_age(), 3u);
}

// ---- Rejections ------------------------------------------------------------------------------

TEST(Cookie, EveryFlippedBitIsRejected) {
  CookieJar jar(fixed_secrets(), 3);
  std::mt19937_64 rng(10);
  for (int n = 0; n < 2000; ++n) {
    const FlowTuple t = (n & 1) ? random_v6_tuple(rng) : random_v4_tuple(rng);
    const auto isn = static_cast<uint32_t>(rng());
    const uint32_t c = random_counter(rng);
    const uint32_t cookie = jar.make(t, isn, static_cast<uint16_t>(rng()), c);
    for (int bit = 0; bit < 32; ++bit) {
      for (uint32_t age = 0; age <= 3; ++age) {
        ASSERT_FALSE(jar.check(t, isn, cookie ^ (1u << bit), c + age).has_value())
            << "bit " << bit << " age " << age;
      }
    }
  }
}

TEST(Cookie, EveryTupleFieldMatters) {
  CookieJar jar(fixed_secrets());
  std::mt19937_64 rng(11);
  for (int n = 0; n < 2000; ++n) {
    const bool six = n & 1;
    const FlowTuple t = six ? random_v6_tuple(rng) : random_v4_tuple(rng);
    const auto isn = static_cast<uint32_t>(rng());
    const uint32_t cookie = jar.make(t, isn, 1460, 500);
    ASSERT_TRUE(jar.check(t, isn, cookie, 500));

    // One bit of one address byte that the family actually uses.
    const size_t first = six ? 0 : 12;
    auto flip_address = [&](Address a) {
      a.bytes[first + rng() % (16 - first)] ^= static_cast<uint8_t>(1u << (rng() % 8));
      return a;
    };
    FlowTuple u = t;
    u.src = flip_address(t.src);
    EXPECT_FALSE(jar.check(u, isn, cookie, 500)) << "src";
    u = t;
    u.dst = flip_address(t.dst);
    EXPECT_FALSE(jar.check(u, isn, cookie, 500)) << "dst";
    u = t;
    u.sport ^= static_cast<uint16_t>(1u << (rng() % 16));
    EXPECT_FALSE(jar.check(u, isn, cookie, 500)) << "sport";
    u = t;
    u.dport ^= static_cast<uint16_t>(1u << (rng() % 16));
    EXPECT_FALSE(jar.check(u, isn, cookie, 500)) << "dport";
    EXPECT_FALSE(jar.check(t.reversed(), isn, cookie, 500)) << "reversed";
    EXPECT_FALSE(jar.check(t, isn + 1, cookie, 500)) << "isn+1";
    EXPECT_FALSE(jar.check(t, isn ^ (1u << (rng() % 32)), cookie, 500)) << "isn bit";
  }
}

TEST(Cookie, V4AndV6WithTheSameLowBytesDiffer) {
  // The IPv4 fast path hashes 4 address bytes; an IPv6 address ending in those same bytes must
  // not share its cookies.
  CookieJar jar(fixed_secrets());
  FlowTuple t{v4(0xC6120001), v4(0x0A0A0302), 40000, 80};
  FlowTuple u = t;
  u.src.bytes[0] = 0x20;
  u.dst.bytes[0] = 0x20;
  const uint32_t cookie = jar.make(t, 77, 1460, 9);
  EXPECT_TRUE(jar.check(t, 77, cookie, 9));
  EXPECT_FALSE(jar.check(u, 77, cookie, 9));
}

TEST(Cookie, ValidAtEveryAgeUpToMaxAgeAndNotBeyond) {
  std::mt19937_64 rng(12);
  for (uint32_t max_age = 0; max_age <= 3; ++max_age) {
    CookieJar jar(fixed_secrets(), max_age);
    for (int n = 0; n < 500; ++n) {
      const FlowTuple t = (n & 1) ? random_v6_tuple(rng) : random_v4_tuple(rng);
      const auto isn = static_cast<uint32_t>(rng());
      const uint32_t c = random_counter(rng);
      const uint32_t cookie = jar.make(t, isn, 1460, c);
      for (uint32_t age = 0; age <= max_age; ++age) ASSERT_TRUE(jar.check(t, isn, cookie, c + age));
      // Expired: every age past the window, including those whose low two bits look young.
      for (uint32_t age = max_age + 1; age <= max_age + 12; ++age) {
        ASSERT_FALSE(jar.check(t, isn, cookie, c + age)) << "age " << age << " max_age " << max_age;
      }
      ASSERT_FALSE(jar.check(t, isn, cookie, c + 1'000'000));
      // From the future: made at c, presented when the clock says c - k.
      for (uint32_t k = 1; k <= 8; ++k) {
        ASSERT_FALSE(jar.check(t, isn, cookie, c - k)) << "future by " << k;
      }
    }
  }
}

// ---- Key rotation ----------------------------------------------------------------------------

// The keys before and after a rotation at `tick` (the old key current since long before), a jar
// of each, and random flows (IPv4 and IPv6 in turn, a random ISN each) to make cookies for.
struct Rotation {
  explicit Rotation(uint32_t tick)
      : before(fixed_secrets(tick - 100)), after(rotate_secrets(before, tick)), old_jar(before, 1), new_jar(after, 1) {}
  template <typename Check>
  void for_random_flows(uint64_t seed, Check check) const {
    std::mt19937_64 rng(seed);
    for (int n = 0; n < 1000; ++n) {
      const FlowTuple t = (n & 1) ? random_v6_tuple(rng) : random_v4_tuple(rng);
      check(t, static_cast<uint32_t>(rng()));
    }
  }
  CookieSecrets before, after;
  CookieJar old_jar, new_jar;
};

TEST(CookieRotation, CookiesOfThePreviousKeyStillValidate) {
  const uint32_t c0 = 27'000'000;
  const Rotation r(c0 + 1);
  const CookieSecrets &before = r.before, &after = r.after;
  ASSERT_EQ(after.previous, before.current);
  ASSERT_NE(after.current, before.current);
  ASSERT_EQ(after.current_since, c0 + 1);

  const CookieJar &old_jar = r.old_jar, &new_jar = r.new_jar;
  r.for_random_flows(13, [&](const FlowTuple& t, uint32_t isn) {
    // Made just before the rotation, with the key that is now `previous`.
    const uint32_t old_cookie = old_jar.make(t, isn, 1460, c0);
    EXPECT_EQ(new_jar.check(t, isn, old_cookie, c0 + 1), 1460);
    // Made after the rotation with the new key.
    const uint32_t new_cookie = new_jar.make(t, isn, 1460, c0 + 1);
    EXPECT_EQ(new_jar.check(t, isn, new_cookie, c0 + 1), 1460);
    EXPECT_EQ(new_jar.check(t, isn, new_cookie, c0 + 2), 1460);
    // Dated after the rotation's tick but made with the old key: the new jar uses `current` for it.
    const uint32_t stale = old_jar.make(t, isn, 1460, c0 + 2);
    EXPECT_FALSE(new_jar.check(t, isn, stale, c0 + 2));
  });
}

// A rotation dates the new key from the tick it happens in (rotate_secrets(old, counter of now),
// and the operator's convention for a shared file): a cookie made earlier in that same tick, with
// the key that is now `previous`, must still validate, or its client's ACK and every
// retransmission of it fail until the handshake times out (seen in the soak: one of 54 000
// connections per rotation). The second try is for that tick only.
TEST(CookieRotation, ACookieMadeInTheRotationsOwnTickBeforeItStillValidates) {
  const uint32_t tick = 27'000'000;
  const Rotation r(tick);
  const CookieJar &old_jar = r.old_jar, &new_jar = r.new_jar;
  r.for_random_flows(15, [&](const FlowTuple& t, uint32_t isn) {
    const uint32_t before_rotation = old_jar.make(t, isn, 1460, tick);
    EXPECT_EQ(new_jar.check(t, isn, before_rotation, tick), 1460);
    EXPECT_EQ(new_jar.check(t, isn, before_rotation, tick + 1), 1460) << "one tick old";
    const uint32_t after_rotation = new_jar.make(t, isn, 1460, tick);
    EXPECT_EQ(new_jar.check(t, isn, after_rotation, tick), 1460);
    // Only that tick: a cookie of the old key dated the tick after is not taken.
    EXPECT_FALSE(new_jar.check(t, isn, old_jar.make(t, isn, 1460, tick + 1), tick + 1));
    EXPECT_FALSE(new_jar.check(t, isn, before_rotation ^ 0x80000000u, tick)) << "a flipped hash bit";
  });
}

TEST(CookieRotation, ACookieOfAnUnknownKeyIsRejectedOnBothSidesOfTheRotation) {
  const uint32_t since = 5000;
  CookieJar jar(fixed_secrets(since), 3);
  CookieJar forger(CookieSecrets{key_from(99), key_from(98), since}, 3);
  std::mt19937_64 rng(14);
  for (int n = 0; n < 2000; ++n) {
    const FlowTuple t = (n & 1) ? random_v6_tuple(rng) : random_v4_tuple(rng);
    const auto isn = static_cast<uint32_t>(rng());
    for (uint32_t made_at = since - 2; made_at <= since + 1; ++made_at) {
      const uint32_t forged = forger.make(t, isn, 1460, made_at);
      ASSERT_FALSE(jar.check(t, isn, forged, since + 1)) << "made_at " << made_at;
      ASSERT_TRUE(forger.check(t, isn, forged, since + 1));  // the forgery itself is well formed
    }
  }
}

TEST(CookieRotation, RotateDrawsAFreshKeyEachTime) {
  std::set<CookieKey> seen;
  CookieSecrets s = generate_secrets(1);
  seen.insert(s.current);
  for (uint32_t c = 2; c < 50; ++c) {
    const CookieSecrets r = rotate_secrets(s, c);
    EXPECT_EQ(r.previous, s.current);
    EXPECT_EQ(r.current_since, c);
    EXPECT_TRUE(seen.insert(r.current).second) << "repeated key";
    s = r;
  }
}

// ---- Forgery odds ----------------------------------------------------------------------------

// A blind attacker's ACK carries a random cookie. The design bound is (accepted ages / 4) * 2^-26;
// the issue asks for no worse than 2^-24. We try N = 2^25 random cookies for one fixed tuple, ISN
// and clock with max_age 3 (every age accepted: the worst case, rate 2^-26, mean 0.5 accepts) and
// assert at most 8 accepts (Poisson):
//   - the design rate 2^-26 exceeds 8 with P = 3.4e-9, and even an engine exactly at the 2^-24
//     bound (mean 2) only with P = 2.4e-4;
//   - a weakened engine fails: 2^-21 (mean 16) passes with P = 0.022, 2^-20 (e.g. only 20 hash
//     bits compared; mean 32) with P = 4.5e-7.
// It cannot flake: keys, tuple and cookies come from fixed seeds, so every run sees the same draws
// (this one accepts none); the bound only says the fixed draw is not a lucky one.
TEST(CookieForgery, RandomCookiesValidateNoMoreOftenThanTwoToTheMinus24) {
  CookieJar jar(fixed_secrets(), 3);
  const FlowTuple t{v4(0xC6120001), v4(0x0A0A0302), 40000, 80};
  const uint32_t isn = 0x12345678;
  const uint32_t now = 27'000'123;
  std::mt19937 rng(15);
  constexpr uint32_t kTrials = 1u << 25;
  uint32_t accepted = 0;
  for (uint32_t i = 0; i < kTrials; ++i) {
    if (jar.check(t, isn, static_cast<uint32_t>(rng()), now)) ++accepted;
  }
  EXPECT_LE(accepted, 8u) << accepted << " of " << kTrials << " random cookies validated";
  std::printf("forgery trial: %u of %u random cookies validated\n", accepted, kTrials);
}

// The complement of the above: among cookies that differ from a valid one only in the hash bits,
// exactly the valid one passes. Scanning 2^20 hash values around it checks the comparison uses
// all 26 bits (a comparison of fewer bits would accept 2^(20-bits) of them).
TEST(CookieForgery, OnlyTheExactHashPasses) {
  CookieJar jar(fixed_secrets(), 1);
  const FlowTuple t{v4(0xC6120001), v4(0x0A0A0302), 40000, 80};
  const uint32_t cookie = jar.make(t, 99, 1460, 700);
  const uint32_t low = cookie & 0x3F;
  const uint32_t hash = cookie >> 6;
  uint32_t accepted = 0;
  for (uint32_t d = 0; d < (1u << 20); ++d) {
    // Vary the low 10 hash bits freely and the high 10 bits as well (spread over all 26).
    const uint32_t h = hash ^ ((d & 0x3FF) | ((d >> 10) << 16));
    if (jar.check(t, 99, (h << 6) | low, 700)) ++accepted;
  }
  EXPECT_EQ(accepted, 1u);
}

// ---- Timestamp option bits -------------------------------------------------------------------

std::vector<SynOptionBits> all_option_bits() {
  std::vector<SynOptionBits> out;
  for (int w = -1; w <= 14; ++w) {
    for (int sack = 0; sack <= 1; ++sack) {
      for (int ecn = 0; ecn <= 1; ++ecn) {
        SynOptionBits b;
        b.has_wscale = w >= 0;
        b.wscale = w >= 0 ? static_cast<uint8_t>(w) : 0;
        b.sack_permitted = sack;
        b.ecn = ecn;
        out.push_back(b);
      }
    }
  }
  return out;
}

std::string describe(const SynOptionBits& b) {
  std::ostringstream s;
  s << "wscale " << (b.has_wscale ? std::to_string(b.wscale) : "none") << " sack " << b.sack_permitted
    << " ecn " << b.ecn;
  return s.str();
}

TEST(CookieTimestamp, OptionBitsRoundTripAndNeverRunAhead) {
  std::vector<uint32_t> nows = {0, 1, 5, 31, 62, 63, 64, 65, 127, 128, 0x7FFFFFFF, 0x80000000,
                                0xFFFFFFC0, 0xFFFFFFDF, 0xFFFFFFFE, 0xFFFFFFFF};
  std::mt19937 rng(16);
  for (int i = 0; i < 2000; ++i) nows.push_back(rng());
  const auto all = all_option_bits();
  ASSERT_EQ(all.size(), 16u * 4u);
  for (uint32_t now : nows) {
    for (const SynOptionBits& b : all) {
      const uint32_t ts = encode_ts_options(now, b);
      const SynOptionBits d = decode_ts_options(ts);
      ASSERT_EQ(d.has_wscale, b.has_wscale) << describe(b) << " now " << now;
      if (b.has_wscale) {
        ASSERT_EQ(d.wscale, b.wscale) << describe(b);
      }
      ASSERT_EQ(d.sack_permitted, b.sack_permitted) << describe(b);
      ASSERT_EQ(d.ecn, b.ecn) << describe(b);
      // Never ahead of the clock, and as close to it as the 6 bits allow (serial arithmetic:
      // for now < 64 the value wraps to just below 2^32, which is still "before" now).
      ASSERT_TRUE(seq_before_eq(ts, now)) << describe(b) << " now " << now << " ts " << ts;
      ASSERT_LT(now - ts, 64u) << describe(b) << " now " << now << " ts " << ts;
    }
  }
}

TEST(CookieTimestamp, BitLayoutIsLinux) {
  SynOptionBits b;
  b.has_wscale = true;
  b.wscale = 7;
  b.sack_permitted = true;
  EXPECT_EQ(encode_ts_options(0x1000, b) & kTsOptionMask, 0x17u);
  b.has_wscale = false;
  b.sack_permitted = false;
  b.ecn = true;
  EXPECT_EQ(encode_ts_options(0x1000, b) & kTsOptionMask, 0x2Fu);
  EXPECT_FALSE(decode_ts_options(0x0F).has_wscale);
}

TEST(CookieTimestamp, WindowScaleAbove14IsClamped) {
  SynOptionBits b;
  b.has_wscale = true;
  b.wscale = 15;  // would otherwise read back as "no window scale"
  const SynOptionBits d = decode_ts_options(encode_ts_options(1u << 20, b));
  EXPECT_TRUE(d.has_wscale);
  EXPECT_EQ(d.wscale, 14);
}

// ---- Secrets file ----------------------------------------------------------------------------

class SecretsFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/syngate-secrets-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "cookie.secrets").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::vector<std::string> dir_entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  void write_raw(const std::string& content, mode_t mode = 0600) const {
    {
      std::ofstream f(path_, std::ios::binary | std::ios::trunc);
      f << content;
    }
    ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
  }
  std::string read_raw() const {
    std::ifstream f(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }
  mode_t mode() const {
    struct stat st {};
    EXPECT_EQ(::stat(path_.c_str(), &st), 0);
    return st.st_mode & 07777;
  }
  // Runs load_or_create and returns the error message, or "" when it did not throw.
  std::string load_error() const {
    try {
      load_or_create_secrets(path_, 1);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(SecretsFile, LoadOrCreateCreatesA0600FileEvenWithAPermissiveUmask) {
  const mode_t old_umask = ::umask(0);
  const CookieSecrets s = load_or_create_secrets(path_, 123);
  ::umask(old_umask);
  EXPECT_EQ(mode(), 0600u);
  EXPECT_EQ(s.current_since, 123u);
  EXPECT_NE(s.current, s.previous);
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"cookie.secrets"});
}

TEST_F(SecretsFile, SecondLoadReturnsTheSameSecrets) {
  const CookieSecrets first = load_or_create_secrets(path_, 123);
  const CookieSecrets second = load_or_create_secrets(path_, 999);
  EXPECT_EQ(first, second);
  EXPECT_EQ(second.current_since, 123u);
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"cookie.secrets"});
}

TEST_F(SecretsFile, ConcurrentCreatorsAgreeOnOneSetOfKeys) {
  // Gateways started together on a shared file: whoever creates it first wins, the others must
  // adopt its keys rather than overwrite them (or their cookies would fail on the others).
  for (int round = 0; round < 20; ++round) {
    path_ = (dir_ / ("race-" + std::to_string(round))).string();
    std::vector<CookieSecrets> got(6);
    std::vector<std::string> errors(got.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < got.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          got[i] = load_or_create_secrets(path_, static_cast<uint32_t>(i));
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(errors[i], "");
      ASSERT_EQ(got[i], got[0]) << "round " << round << " thread " << i;
    }
    ASSERT_EQ(load_or_create_secrets(path_, 99), got[0]);
  }
  std::vector<std::string> expected;
  for (int round = 0; round < 20; ++round) expected.push_back("race-" + std::to_string(round));
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(dir_entries(), expected);  // and no temp file left by any loser
}

TEST_F(SecretsFile, ARestartKeepsValidatingCookiesInFlight) {
  std::mt19937_64 rng(17);
  const FlowTuple t = random_v4_tuple(rng);
  const uint32_t cookie = CookieJar(load_or_create_secrets(path_, 40)).make(t, 1, 1260, 41);
  // "Restart": a new jar from the file only.
  EXPECT_EQ(CookieJar(load_or_create_secrets(path_, 42)).check(t, 1, cookie, 42), 1260);
}

TEST_F(SecretsFile, SaveLoadRoundTrip) {
  for (uint32_t since : {0u, 1u, 27'000'000u, 0xFFFFFFFFu}) {
    const CookieSecrets s{key_from(since), key_from(since + 1ull), since};
    save_secrets(path_, s);
    EXPECT_EQ(mode(), 0600u);
    EXPECT_EQ(load_or_create_secrets(path_, 5), s);
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"cookie.secrets"});
  }
}

TEST_F(SecretsFile, SaveReplacesAnExistingFileAndRepairsNothingElse) {
  const CookieSecrets a = load_or_create_secrets(path_, 1);
  const CookieSecrets b = rotate_secrets(a, 2);
  save_secrets(path_, b);
  EXPECT_EQ(load_or_create_secrets(path_, 3), b);
}

TEST_F(SecretsFile, GroupOrOtherAccessIsRefused) {
  save_secrets(path_, fixed_secrets(3));
  for (mode_t m : {0644, 0640, 0604, 0620, 0602, 0660, 0610}) {
    ASSERT_EQ(::chmod(path_.c_str(), m), 0);
    const std::string err = load_error();
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(m));
    EXPECT_NE(err.find(std::string("mode ") + octal), std::string::npos) << err;
    EXPECT_NE(err.find(path_), std::string::npos) << err;
  }
  ASSERT_EQ(::chmod(path_.c_str(), 0400), 0);  // read-only for the owner is fine
  EXPECT_EQ(load_or_create_secrets(path_, 1), fixed_secrets(3));
}

TEST_F(SecretsFile, AFileOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown the file to another user";
  save_secrets(path_, fixed_secrets(3));
  ASSERT_EQ(::chown(path_.c_str(), 65534, 65534), 0);
  EXPECT_NE(load_error().find("owned by uid 65534"), std::string::npos) << load_error();
}

TEST_F(SecretsFile, EveryTruncationIsRefused) {
  save_secrets(path_, fixed_secrets(27'000'000));
  const std::string full = read_raw();
  ASSERT_GT(full.size(), 100u);
  for (size_t len = 0; len < full.size(); ++len) {
    write_raw(full.substr(0, len));
    const std::string err = load_error();
    ASSERT_FALSE(err.empty()) << "accepted a file cut at " << len << " of " << full.size() << " bytes";
    ASSERT_NE(err.find(path_), std::string::npos) << err;
    ASSERT_TRUE(err.find("truncated") != std::string::npos || err.find("empty") != std::string::npos ||
                err.find("malformed") != std::string::npos || err.find("not a syngate") != std::string::npos)
        << "cut at " << len << ": " << err;
  }
  // A damaged file is never "repaired" by overwriting it with new keys: cookies in flight and
  // other gateways sharing it depend on the old ones, so the operator decides.
  EXPECT_EQ(read_raw(), full.substr(0, full.size() - 1));
}

TEST_F(SecretsFile, GarbageIsRefusedWithAReason) {
  save_secrets(path_, fixed_secrets(7));
  const std::string good = read_raw();
  const std::string key = "00112233445566778899aabbccddeeff";
  struct Case {
    std::string content;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"hello world\n", "not a syngate cookie secrets file"},
      {"syngate-cookie-secrets 2\ncurrent " + key + "\nprevious " + key + "\ncurrent_since 1\n",
       "unsupported format"},
      {"syngate-cookie-secrets 1\ncurrent " + key + "\nprevious " + key + "\ncurrent_since 1\nextra\n",
       "unexpected content"},
      {"syngate-cookie-secrets 1\ncurrent 00112233445566778899AABBCCDDEEFF\nprevious " + key +
           "\ncurrent_since 1\n",
       "hex"},
      {"syngate-cookie-secrets 1\ncurrent " + key + "00\nprevious " + key + "\ncurrent_since 1\n", "32"},
      {"syngate-cookie-secrets 1\nprevious " + key + "\ncurrent " + key + "\ncurrent_since 1\n",
       "expected 'current"},
      {"syngate-cookie-secrets 1\ncurrent  " + key + "\nprevious " + key + "\ncurrent_since 1\n", "malformed"},
      {"syngate-cookie-secrets 1\ncurrent " + key + "\nprevious " + key + "\ncurrent_since -1\n", "decimal"},
      {"syngate-cookie-secrets 1\ncurrent " + key + "\nprevious " + key + "\ncurrent_since 4294967296\n",
       "32 bits"},
      {"syngate-cookie-secrets 1\ncurrent " + key + "\nprevious " + key + "\ncurrent_since 007\n",
       "leading zeros"},
      {"syngate-cookie-secrets 1\r\ncurrent " + key + "\nprevious " + key + "\ncurrent_since 1\n",
       "unsupported format"},
      {std::string(5000, 'x'), "too large"},
      {std::string("syngate-cookie-secrets 1\0\n", 26), "unsupported format"},
  };
  for (const Case& c : cases) {
    write_raw(c.content);
    const std::string err = load_error();
    EXPECT_NE(err.find(c.reason), std::string::npos) << "content:\n" << c.content << "\nerror: " << err;
  }
  // The same lines in the right order load, so the cases above fail for the reason they name.
  write_raw("syngate-cookie-secrets 1\ncurrent " + key + "\nprevious " + key + "\ncurrent_since 1\n");
  EXPECT_EQ(load_error(), "");
  write_raw(good);
  EXPECT_EQ(load_or_create_secrets(path_, 1), fixed_secrets(7));
}

TEST_F(SecretsFile, RandomBytesAreRefused) {
  std::mt19937 rng(18);
  for (int n = 0; n < 200; ++n) {
    std::string junk(rng() % 200, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    write_raw(junk);
    EXPECT_FALSE(load_error().empty());
  }
}

TEST_F(SecretsFile, ADirectoryIsNotASecretsFile) {
  fs::create_directory(path_);
  ::chmod(path_.c_str(), 0700);
  EXPECT_NE(load_error().find("not a regular file"), std::string::npos) << load_error();
}

TEST_F(SecretsFile, AMissingDirectoryIsAClearError) {
  path_ = (dir_ / "no-such-dir" / "cookie.secrets").string();
  const std::string err = load_error();
  EXPECT_NE(err.find("cannot create a temporary file"), std::string::npos) << err;
  EXPECT_THROW(save_secrets(path_, fixed_secrets()), std::runtime_error);
  EXPECT_THROW(load_or_create_secrets("", 1), std::runtime_error);
}

TEST_F(SecretsFile, AFailedSaveLeavesNoTempFile) {
  // rename() of a file over a non-empty directory fails (EISDIR/ENOTEMPTY) even for root, after
  // the temp file was written: the error path must remove it.
  fs::create_directory(path_);
  std::ofstream(fs::path(path_) / "keep") << "x";
  try {
    save_secrets(path_, fixed_secrets(2));
    ADD_FAILURE() << "saved over a directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot rename"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"cookie.secrets"});
  EXPECT_TRUE(fs::is_directory(path_));
}

TEST(Secrets, GenerateDrawsFreshRandomKeys) {
  const CookieSecrets a = generate_secrets(10);
  const CookieSecrets b = generate_secrets(10);
  EXPECT_EQ(a.current_since, 10u);
  EXPECT_NE(a.current, b.current);
  EXPECT_NE(a.previous, b.previous);
  EXPECT_NE(a.current, a.previous);
  EXPECT_NE(a.current, CookieKey{});
}

}  // namespace
}  // namespace syngate
