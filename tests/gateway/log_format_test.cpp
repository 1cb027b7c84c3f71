#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <spdlog/details/log_msg.h>

#include "config.hpp"
#include "log_format.hpp"

using syngate::gw::JsonLogFormatter;

TEST(JsonLog, EveryLineIsOneJsonObjectWhateverTheMessage) {
  JsonLogFormatter f;
  const std::string nasty = "quote \" backslash \\ newline \n tab \t bell \x07 and utf-8 \xc3\xa9";
  spdlog::details::log_msg msg(spdlog::source_loc{}, "syngate", spdlog::level::warn, nasty);
  spdlog::memory_buf_t buf;
  f.format(msg, buf);
  const std::string line(buf.data(), buf.size());
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per message";
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j.at("level"), "warning");
  EXPECT_EQ(j.at("msg"), nasty);
  EXPECT_EQ(j.at("logger"), "syngate");
  const std::string time = j.at("time");
  EXPECT_EQ(time.size(), 24u) << time;
  EXPECT_EQ(time.back(), 'Z');
}

TEST(JsonLog, ConfigAcceptsTextAndJsonOnly) {
  const std::string base = "[gateway]\nsecret_file = \"/s\"\n";
  const std::string svc = "[[service]]\naddress = \"10.0.0.1\"\nport = 80\n";
  EXPECT_EQ(syngate::gw::parse_config(base + "log_format = \"json\"\n" + svc).log_format, "json");
  EXPECT_EQ(syngate::gw::parse_config(base + svc).log_format, "text");
  try {
    syngate::gw::parse_config(base + "log_format = \"xml\"\n" + svc);
    ADD_FAILURE() << "xml accepted";
  } catch (const syngate::gw::ConfigError& e) {
    EXPECT_EQ(e.key(), "gateway.log_format");
  }
}
