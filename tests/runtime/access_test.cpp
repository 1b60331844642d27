// API tokens: their text, roles and scopes, and the registry that makes, checks, revokes and
// keeps them (on a host's store, read again after a restart).

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "host_fixture.hpp"
#include "twin/api/tokens.hpp"
#include "twin/runtime/access.hpp"
#include "twin/runtime/kv_store.hpp"

namespace twin::test {
namespace {

using namespace runtime;
using api::token_registry;
using api::token_verdict;


access_token spec(const std::string& name, role r, std::vector<std::string> ns = {},
                  std::vector<std::string> twins = {}) {
  access_token t;
  t.name = name;
  t.role = r;
  t.namespaces = std::move(ns);
  t.twins = std::move(twins);
  return t;
}

TEST(access, a_token_text_has_one_form) {
  std::string good = "twn_0123456789abcdef_" + std::string(43, 'x');
  auto parts = parse_token(good);
  ASSERT_TRUE(parts);
  EXPECT_EQ(parts->id, "0123456789abcdef");
  EXPECT_EQ(parts->secret, std::string(43, 'x'));
  for (const std::string& bad : std::vector<std::string>{
         std::string{}, "twn_", good.substr(0, good.size() - 1), good + "x",
        "twx_0123456789abcdef_" + std::string(43, 'x'),
        "twn_0123456789ABCDEF_" + std::string(43, 'x'),   // upper-case hex
        "twn_0123456789abcdef-" + std::string(43, 'x'),   // no separator
        "twn_0123456789abcdef_" + std::string(42, 'x') + "=",
        "twn_0123456789abcdef_" + std::string(42, 'x') + "\n"})
    EXPECT_FALSE(parse_token(bad)) << bad;
}

TEST(access, the_authorization_header_is_a_bearer_token) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer   abc  "), "abc");
  EXPECT_EQ(bearer_token("BEARER abc"), "abc");
  for (auto bad : {"", "Bearer", "Bearer ", "Bearer  ", "Basic abc", "Bearerabc", "Bearer a b",
                   "Bearer\tabc", "Token abc"})
    EXPECT_FALSE(bearer_token(bad)) << bad;
}

TEST(access, each_role_may_do_what_the_one_before_may_and_a_device_only_reports) {
  using p = permission;
  struct row {
    role r;
    bool read, control, write, telemetry, admin;
  };
  for (auto [r, read, control, write, telemetry, admin] :
       {row{role::reader, true, false, false, false, false},
        row{role::operator_, true, true, false, false, false},
        row{role::writer, true, true, true, true, false},
        row{role::admin, true, true, true, true, true},
        row{role::device, false, false, false, true, false}}) {
    EXPECT_EQ(grants(r, p::read), read) << to_string(r);
    EXPECT_EQ(grants(r, p::control), control) << to_string(r);
    EXPECT_EQ(grants(r, p::write), write) << to_string(r);
    EXPECT_EQ(grants(r, p::telemetry), telemetry) << to_string(r);
    EXPECT_EQ(grants(r, p::admin), admin) << to_string(r);
  }
}

TEST(access, a_token_sees_its_namespaces_and_a_device_its_own_twins) {
  auto reader = spec("r", role::reader, {"plant2", "plant1", "plant1"});
  ASSERT_EQ(check_token(reader), "");
  EXPECT_EQ(reader.namespaces, (std::vector<std::string>{"plant1", "plant2"}));
  EXPECT_TRUE(reader.sees(id("plant1:m1")));
  EXPECT_TRUE(reader.sees(id("plant2:m1")));
  EXPECT_FALSE(reader.sees(id("plant3:m1")));
  EXPECT_FALSE(reader.sees(id("plant:m1")));
  auto all = spec("a", role::writer);
  ASSERT_EQ(check_token(all), "");
  EXPECT_TRUE(all.sees(id("any:thing")));
  auto device = spec("d", role::device, {}, {"plant1:m2", "plant1:m1"});
  ASSERT_EQ(check_token(device), "");
  EXPECT_TRUE(device.sees(id("plant1:m1")));
  EXPECT_FALSE(device.sees(id("plant1:m3")));
}

TEST(access, a_token_asking_for_what_it_cannot_have_is_refused) {
  auto why = [](access_token t) { return check_token(t); };
  EXPECT_NE(why(spec("", role::reader)), "");
  EXPECT_NE(why(spec(std::string(201, 'n'), role::reader)), "");
  EXPECT_NE(why(spec("bell\a", role::reader)), "");
  EXPECT_NE(why(spec("n", role::reader, {"Bad Namespace"})), "");
  EXPECT_NE(why(spec("n", role::admin, {"plant1"})), "");          // admins see every one
  EXPECT_NE(why(spec("n", role::reader, {}, {"plant1:m1"})), "");  // twins: devices only
  EXPECT_NE(why(spec("n", role::device)), "");                     // a device needs twins
  EXPECT_NE(why(spec("n", role::device, {"plant1"}, {"plant1:m1"})), "");
  EXPECT_NE(why(spec("n", role::device, {}, {"not an id"})), "");
  std::vector<std::string> many;
  for (int i = 0; i < 65; ++i)
    many.push_back("n" + std::to_string(i));
  EXPECT_NE(why(spec("n", role::reader, many)), "");
  many.pop_back();
  EXPECT_EQ(why(spec("n", role::reader, many)), "");
}

TEST(access, a_token_reads_back_as_it_was_stored_and_garbage_does_not) {
  auto t = spec("line 1 dashboards", role::device, {}, {"p:a", "p:b"});
  ASSERT_EQ(check_token(t), "");
  t.id = "00112233445566ff";
  t.secret_hash = std::string(32, '\x07');
  t.created_ms = 1;
  t.expires_ms = 2;
  t.revoked_ms = 3;
  t.created_by = "ffeeddccbbaa9988";
  auto back = access_token::decode(t.encode());
  ASSERT_TRUE(back) << error_message(back.error());
  EXPECT_EQ(back->id, t.id);
  EXPECT_EQ(back->name, t.name);
  EXPECT_EQ(back->role, role::device);
  EXPECT_EQ(back->twins, t.twins);
  EXPECT_EQ(back->secret_hash, t.secret_hash);
  EXPECT_EQ(back->expires_ms, 2);
  EXPECT_EQ(back->revoked_ms, 3);
  EXPECT_EQ(back->created_by, t.created_by);
  EXPECT_FALSE(access_token::decode("not a token"));
  EXPECT_FALSE(access_token::decode(""));
}

class token_registry_test : public host_test {
protected:
  void SetUp() override { start_failing(); }

  std::unique_ptr<token_registry> open() {
    auto r = std::make_unique<token_registry>(
      make_local_kv_store(*store_, h().local_commit(), "tokens/"));
    EXPECT_FALSE(r->load());
    return r;
  }
};

TEST_F(token_registry_test, a_token_made_is_known_by_its_secret_only_until_revoked) {
  auto tokens = open();
  auto made = tokens->create(spec("dash", role::reader, {"f"}), "");
  ASSERT_TRUE(made) << error_message(made.error());
  EXPECT_TRUE(parse_token(made->text));
  EXPECT_EQ(made->text.substr(4, 16), made->token.id);
  // The secret is kept only as its hash: neither the record nor its bytes hold it.
  auto secret = made->text.substr(21);
  EXPECT_EQ(made->token.secret_hash.size(), 32u);
  EXPECT_EQ(made->token.encode().find(secret), std::string::npos);
  auto ok = tokens->verify(made->text, now_ms());
  EXPECT_EQ(ok.verdict, token_verdict::ok);
  ASSERT_TRUE(ok.token);
  EXPECT_EQ(ok.token->name, "dash");
  // Another secret of the same id is unknown, as is an id that was never made.
  auto forged = made->text;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(tokens->verify(forged, now_ms()).verdict, token_verdict::unknown);
  EXPECT_EQ(tokens->verify("twn_0000000000000000_" + secret, now_ms()).verdict,
            token_verdict::unknown);
  EXPECT_EQ(tokens->verify("Bearer " + made->text, now_ms()).verdict, token_verdict::malformed);
  EXPECT_EQ(tokens->verify(made->text, now_ms()).verdict, token_verdict::ok);  // as verified

  auto revoked = tokens->revoke(made->token.id);
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(*revoked);
  EXPECT_EQ(tokens->verify(made->text, now_ms()).verdict, token_verdict::revoked);
  auto again = tokens->revoke("0000000000000000");
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);

  // Read again from the store: the same tokens, the revocation kept.
  auto reopened = open();
  auto listed = reopened->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, made->token.id);
  EXPECT_NE(listed[0].revoked_ms, 0);
  EXPECT_EQ(reopened->verify(made->text, now_ms()).verdict, token_verdict::revoked);
}

TEST_F(token_registry_test, a_token_is_refused_from_its_expiry_on) {
  auto tokens = open();
  auto t = spec("short", role::writer);
  t.expires_ms = now_ms() + 60'000;
  auto made = tokens->create(t, "");
  ASSERT_TRUE(made);
  EXPECT_EQ(tokens->verify(made->text, now_ms()).verdict, token_verdict::ok);
  EXPECT_EQ(tokens->verify(made->text, t.expires_ms - 1).verdict, token_verdict::ok);
  EXPECT_EQ(tokens->verify(made->text, t.expires_ms).verdict, token_verdict::expired);
}

TEST_F(token_registry_test, a_token_that_asks_too_much_is_not_made) {
  auto tokens = open();
  EXPECT_FALSE(tokens->create(spec("x", role::admin, {"f"}), ""));
  EXPECT_TRUE(tokens->list().empty());
}

TEST_F(token_registry_test, the_first_start_writes_an_admin_token_readable_by_its_owner_only) {
  auto path = dir_.sub("secrets/admin.token");
  auto tokens = open();
  auto said = tokens->bootstrap(path);
  ASSERT_TRUE(said) << error_message(said.error());
  EXPECT_NE(said->find(path), std::string::npos) << *said;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string text;
  std::ifstream{path} >> text;
  auto ok = tokens->verify(text, now_ms());
  ASSERT_EQ(ok.verdict, token_verdict::ok);
  EXPECT_EQ(ok.token->role, role::admin);
  EXPECT_TRUE(ok.token->namespaces.empty());

  // The next start finds it: no other token is made, and the file is the same.
  auto next = open();
  ASSERT_TRUE(next->bootstrap(path));
  EXPECT_EQ(next->list().size(), 1u);
  std::string again;
  std::ifstream{path} >> again;
  EXPECT_EQ(again, text);
  // With the file gone and an admin token active, none is made.
  std::filesystem::remove(path);
  ASSERT_TRUE(next->bootstrap(path));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(next->list().size(), 1u);
  // Revoked, the admin token is replaced at the next start, in a new file.
  ASSERT_TRUE(next->revoke(ok.token->id));
  ASSERT_TRUE(next->bootstrap(path));
  ASSERT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(next->list().size(), 2u);
}

TEST_F(token_registry_test, an_admin_token_file_given_is_known_and_a_forged_one_refused) {
  auto path = dir_.sub("admin.token");
  std::string text = "twn_00000000000000a1_" + std::string(43, 'k');
  std::ofstream{path} << text << '\n';
  std::filesystem::permissions(path, std::filesystem::perms::owner_read
                                       | std::filesystem::perms::owner_write);
  auto tokens = open();
  ASSERT_TRUE(tokens->bootstrap(path));
  EXPECT_EQ(tokens->verify(text, now_ms()).verdict, token_verdict::ok);
  // The same id with another secret in the file: the node does not start on it.
  std::ofstream{path, std::ios::trunc} << "twn_00000000000000a1_" + std::string(43, 'j');
  EXPECT_FALSE(open()->bootstrap(path));
  std::ofstream{path, std::ios::trunc} << "not a token";
  EXPECT_FALSE(open()->bootstrap(path));
}

} // namespace
} // namespace twin::test
