#include "addr.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace syngate::flood;

TEST(Cidr, ParsesAndFormats) {
  const auto c = parse_cidr("198.18.0.0/15");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->base, 0xC6120000u);
  EXPECT_EQ(c->prefix, 15);
  EXPECT_EQ(c->size(), 131072u);
  EXPECT_EQ(c->to_string(), "198.18.0.0/15");
  EXPECT_EQ(parse_cidr("10.1.2.3")->prefix, 32);
  EXPECT_EQ(parse_cidr("0.0.0.0/0")->size(), uint64_t{1} << 32);
}

TEST(Cidr, RejectsGarbageWithAReason) {
  std::string err;
  EXPECT_FALSE(parse_cidr("198.18.0.1/15", &err));
  EXPECT_NE(err.find("198.18.0.0/15"), std::string::npos) << err;  // suggests the fix
  for (const char* bad : {"", "1.2.3", "1.2.3.4/33", "1.2.3.4/", "256.1.1.1", "01.2.3.4", "1.2.3.4/-1",
                          "a.b.c.d", "1.2.3.4.5", "1.2.3.4/8x"}) {
    EXPECT_FALSE(parse_cidr(bad)) << bad;
  }
}

TEST(Cidr, BenchmarkRangeContainment) {
  EXPECT_TRUE(parse_cidr("198.18.0.0/15")->within(kBenchmarkRange));
  EXPECT_TRUE(parse_cidr("198.19.7.0/24")->within(kBenchmarkRange));
  EXPECT_FALSE(parse_cidr("198.16.0.0/12")->within(kBenchmarkRange));
  EXPECT_FALSE(parse_cidr("10.0.0.0/8")->within(kBenchmarkRange));
  EXPECT_FALSE(parse_cidr("198.20.0.0/16")->within(kBenchmarkRange));
}

TEST(Endpoint, Parses) {
  const auto e = parse_endpoint("10.10.3.2:80");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ip, 0x0A0A0302u);
  EXPECT_EQ(e->port, 80);
  std::string err;
  EXPECT_FALSE(parse_endpoint("10.10.3.2", &err));
  EXPECT_FALSE(parse_endpoint("10.10.3.2:0"));
  EXPECT_FALSE(parse_endpoint("10.10.3.2:65536"));
  EXPECT_FALSE(parse_endpoint("host:80"));
}

TEST(AddressIterator, FullPeriodSkippingNetworkAndBroadcast) {
  const Cidr c = *parse_cidr("198.18.4.0/22");
  AddressIterator it(c, 12345);
  std::set<uint32_t> seen;
  for (uint64_t i = 0; i < it.usable(); ++i) {
    const uint32_t a = it.next();
    ASSERT_TRUE(c.contains(a));
    ASSERT_NE(a, c.base);
    ASSERT_NE(a, c.base + 1023);
    seen.insert(a);
  }
  EXPECT_EQ(seen.size(), 1022u);  // every usable address once before any repeats
}

TEST(AddressIterator, TinyRanges) {
  AddressIterator one(*parse_cidr("198.18.0.7/32"), 99);
  EXPECT_EQ(one.next(), 0xC6120007u);
  EXPECT_EQ(one.next(), 0xC6120007u);
  AddressIterator two(*parse_cidr("198.18.0.6/31"), 1);
  std::set<uint32_t> seen{two.next(), two.next()};
  EXPECT_EQ(seen.size(), 2u);
}

TEST(PortIterator, VisitsEveryUnprivilegedPort) {
  PortIterator it(777);
  std::set<uint16_t> seen;
  for (int i = 0; i < 64512; ++i) {
    const uint16_t p = it.next();
    ASSERT_GE(p, 1024);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 64512u);
}
