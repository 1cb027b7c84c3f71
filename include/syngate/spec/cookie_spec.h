/* The SYN cookie, specified once for the C++ core and the XDP program.
 *
 * This header is plain C that compiles three ways: as C++20 (core/cookie.cpp), as C, and as BPF C
 * (clang -target bpf, bpf/syngate_xdp.bpf.c). It therefore uses no libc, no loops whose bound is
 * not a constant, and only static inline functions; the integer types come from a small shim.
 * Both sides computing cookies through this one text is what keeps a SYN-ACK sent from XDP and
 * one sent by the NFQUEUE engine interchangeable: the engine validates the ACK either may cause.
 *
 * Layout of the 32-bit cookie (the ISN of our SYN-ACK), most significant bit first:
 *   bits 31..6  26 bits of SipHash-2-4(key, input): the top 26 bits of the hash's high word
 *   bits  5..4  counter & 3 (the validator rebuilds the full counter from its clock)
 *   bits  3..0  index into the MSS table
 * Hash input, integers little-endian so a secrets file moves between hosts of either byte order:
 *   IPv4: src(4) dst(4) sport(2) dport(2) client_isn(4) counter(4) mss_index(1)   = 21 bytes
 *   IPv6: src(16) dst(16) sport(2) dport(2) client_isn(4) counter(4) mss_index(1) = 45 bytes
 * Addresses enter as they are on the wire (network order); ports and numbers as host integers.
 * SipHash mixes the length into its last block, so the two families never share an input.
 *
 * Timestamp option bits (Linux layout) in the low 6 bits of our TSval when the client sent
 * timestamps: bits 0-3 window scale (0xF = none), bit 4 SACK-permitted, bit 5 ECN.
 */
#ifndef SYNGATE_SPEC_COOKIE_SPEC_H
#define SYNGATE_SPEC_COOKIE_SPEC_H

#include "syngate/spec/sg_types.h"

#define SG_COOKIE_HASH_BITS 26
#define SG_COOKIE_COUNTER_SHIFT 4
#define SG_COOKIE_COUNTER_MASK 3u
#define SG_COOKIE_MSS_MASK 0xFu
/* Ages beyond 3 ticks cannot be told apart from young ones: two bits of counter travel. */
#define SG_COOKIE_MAX_AGE 3u
/* One counter tick per 64 seconds. */
#define SG_COOKIE_TICK_NS (64ull * 1000ull * 1000ull * 1000ull)

#define SG_TS_OPTION_BITS 6
#define SG_TS_OPTION_MASK ((1u << SG_TS_OPTION_BITS) - 1u)

/* Ascending; a client's MSS is rounded down to the nearest entry, never up (we must not promise
 * the backend a larger MSS than the client can take). 16 steps instead of Linux's 4. */
#define SG_COOKIE_MSS_TABLE \
  { 216, 536, 1024, 1200, 1220, 1240, 1260, 1300, 1360, 1400, 1420, 1440, 1452, 1460, 4312, 8960 }

/* Index of the largest table entry <= mss, 0 below the first: a sum of comparisons, so it is
 * branch-free and has no loop for the verifier to walk. Entry 0 (216) counts as always reached. */
SG_INLINE sg_u8 sg_cookie_mss_index(sg_u16 mss) {
  return (sg_u8)((mss >= 536) + (mss >= 1024) + (mss >= 1200) + (mss >= 1220) + (mss >= 1240) +
                 (mss >= 1260) + (mss >= 1300) + (mss >= 1360) + (mss >= 1400) + (mss >= 1420) +
                 (mss >= 1440) + (mss >= 1452) + (mss >= 1460) + (mss >= 4312) + (mss >= 8960));
}

/* The MSS a cookie's index stands for: a switch, not an array, so the BPF object needs no
 * read-only data section for it. */
SG_INLINE sg_u16 sg_cookie_mss_value(sg_u32 index) {
  switch (index & SG_COOKIE_MSS_MASK) {
    case 0: return 216;
    case 1: return 536;
    case 2: return 1024;
    case 3: return 1200;
    case 4: return 1220;
    case 5: return 1240;
    case 6: return 1260;
    case 7: return 1300;
    case 8: return 1360;
    case 9: return 1400;
    case 10: return 1420;
    case 11: return 1440;
    case 12: return 1452;
    case 13: return 1460;
    case 14: return 4312;
    default: return 8960;
  }
}

SG_INLINE sg_u32 sg_cookie_counter(sg_u64 now_ns) { return (sg_u32)(now_ns / SG_COOKIE_TICK_NS); }
/* The millisecond clock our TSvals run on (it wraps every 49.7 days, as TSvals may). */
SG_INLINE sg_u32 sg_now_ms(sg_u64 now_ns) { return (sg_u32)(now_ns / 1000000ull); }

/* ---- SipHash-2-4 ---------------------------------------------------------------------------- */

struct sg_sip_state {
  sg_u64 v0, v1, v2, v3;
};

SG_INLINE sg_u64 sg_rotl64(sg_u64 x, int b) { return (x << b) | (x >> (64 - b)); }

SG_INLINE void sg_sip_round(struct sg_sip_state* s) {
  s->v0 += s->v1;
  s->v1 = sg_rotl64(s->v1, 13);
  s->v1 ^= s->v0;
  s->v0 = sg_rotl64(s->v0, 32);
  s->v2 += s->v3;
  s->v3 = sg_rotl64(s->v3, 16);
  s->v3 ^= s->v2;
  s->v0 += s->v3;
  s->v3 = sg_rotl64(s->v3, 21);
  s->v3 ^= s->v0;
  s->v2 += s->v1;
  s->v1 = sg_rotl64(s->v1, 17);
  s->v1 ^= s->v2;
  s->v2 = sg_rotl64(s->v2, 32);
}

SG_INLINE sg_u64 sg_load_le64(const sg_u8* p) {
  return (sg_u64)p[0] | (sg_u64)p[1] << 8 | (sg_u64)p[2] << 16 | (sg_u64)p[3] << 24 |
         (sg_u64)p[4] << 32 | (sg_u64)p[5] << 40 | (sg_u64)p[6] << 48 | (sg_u64)p[7] << 56;
}

SG_INLINE void sg_sip_init(struct sg_sip_state* s, const sg_u8 key[16]) {
  const sg_u64 k0 = sg_load_le64(key);
  const sg_u64 k1 = sg_load_le64(key + 8);
  s->v0 = 0x736f6d6570736575ull ^ k0;
  s->v1 = 0x646f72616e646f6dull ^ k1;
  s->v2 = 0x6c7967656e657261ull ^ k0;
  s->v3 = 0x7465646279746573ull ^ k1;
}

/* One 8-byte message word: two compression rounds. */
SG_INLINE void sg_sip_word(struct sg_sip_state* s, sg_u64 m) {
  s->v3 ^= m;
  sg_sip_round(s);
  sg_sip_round(s);
  s->v0 ^= m;
}

/* The last word already holds the tail bytes and the length in its top byte. */
SG_INLINE sg_u64 sg_sip_finish(struct sg_sip_state* s, sg_u64 last) {
  sg_sip_word(s, last);
  s->v2 ^= 0xff;
  sg_sip_round(s);
  sg_sip_round(s);
  sg_sip_round(s);
  sg_sip_round(s);
  return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* The cookie input's fixed tail after the addresses: sport dport isn counter mss_index (13 bytes),
 * little-endian. Returned as the 8 bytes that follow the addresses (`head`) and the 5 after them
 * (`tail`, in the low 40 bits). */
SG_INLINE void sg_cookie_fields(sg_u16 sport, sg_u16 dport, sg_u32 client_isn, sg_u32 counter,
                                sg_u8 mss_index, sg_u64* head, sg_u64* tail) {
  *head = (sg_u64)sport | (sg_u64)dport << 16 | (sg_u64)client_isn << 32;
  *tail = (sg_u64)counter | (sg_u64)mss_index << 32;
}

/* The 26-bit hash of an IPv4 flow: 21 bytes = words [src dst] [fields head] and a last block of
 * 5 tail bytes and the length 21. */
SG_INLINE sg_u32 sg_cookie_hash_v4(const sg_u8 key[16], const sg_u8 src[4], const sg_u8 dst[4],
                                   sg_u16 sport, sg_u16 dport, sg_u32 client_isn, sg_u32 counter,
                                   sg_u8 mss_index) {
  sg_u64 head, tail;
  sg_cookie_fields(sport, dport, client_isn, counter, mss_index, &head, &tail);
  const sg_u64 addrs = (sg_u64)src[0] | (sg_u64)src[1] << 8 | (sg_u64)src[2] << 16 |
                       (sg_u64)src[3] << 24 | (sg_u64)dst[0] << 32 | (sg_u64)dst[1] << 40 |
                       (sg_u64)dst[2] << 48 | (sg_u64)dst[3] << 56;
  struct sg_sip_state s;
  sg_sip_init(&s, key);
  sg_sip_word(&s, addrs);
  sg_sip_word(&s, head);
  const sg_u64 h = sg_sip_finish(&s, tail | (sg_u64)21 << 56);
  return (sg_u32)(h >> 32) >> (32 - SG_COOKIE_HASH_BITS);
}

/* IPv6: 45 bytes = src (2 words), dst (2 words), fields head, and a last block of the 5 tail
 * bytes and the length 45. */
SG_INLINE sg_u32 sg_cookie_hash_v6(const sg_u8 key[16], const sg_u8 src[16], const sg_u8 dst[16],
                                   sg_u16 sport, sg_u16 dport, sg_u32 client_isn, sg_u32 counter,
                                   sg_u8 mss_index) {
  sg_u64 head, tail;
  sg_cookie_fields(sport, dport, client_isn, counter, mss_index, &head, &tail);
  struct sg_sip_state s;
  sg_sip_init(&s, key);
  sg_sip_word(&s, sg_load_le64(src));
  sg_sip_word(&s, sg_load_le64(src + 8));
  sg_sip_word(&s, sg_load_le64(dst));
  sg_sip_word(&s, sg_load_le64(dst + 8));
  sg_sip_word(&s, head);
  const sg_u64 h = sg_sip_finish(&s, tail | (sg_u64)45 << 56);
  return (sg_u32)(h >> 32) >> (32 - SG_COOKIE_HASH_BITS);
}

/* SipHash-2-4 of exactly 16 bytes (an address, e.g. a masked source prefix for a budget cell):
 * two message words and a last block holding only the length. */
SG_INLINE sg_u64 sg_siphash24_16(const sg_u8 key[16], const sg_u8 in[16]) {
  struct sg_sip_state s;
  sg_sip_init(&s, key);
  sg_sip_word(&s, sg_load_le64(in));
  sg_sip_word(&s, sg_load_le64(in + 8));
  return sg_sip_finish(&s, (sg_u64)16 << 56);
}

/* ---- Cookies -------------------------------------------------------------------------------- */

/* The keys a cookie may have been made with. Two keys only, so rotations must be more than
 * max_age ticks apart or cookies of the key before `previous` fail. */
struct sg_cookie_secrets {
  sg_u8 current[16];
  sg_u8 previous[16];
  sg_u32 current_since; /* cookie counter at which `current` took over */
  sg_u32 max_age;       /* ticks a cookie stays valid, 0..SG_COOKIE_MAX_AGE */
};

/* Serial comparison, right across the (8700-year) wrap of the 32-bit counter. */
SG_INLINE const sg_u8* sg_cookie_key_for(const struct sg_cookie_secrets* s, sg_u32 counter) {
  return (sg_s32)(counter - s->current_since) >= 0 ? s->current : s->previous;
}

/* One flow (client -> server); addresses in the family's own width: 16 bytes if v6, else 4. */
struct sg_cookie_flow {
  const sg_u8* src;
  const sg_u8* dst;
  sg_u16 sport;
  sg_u16 dport;
  int v6;
};

SG_INLINE sg_u32 sg_cookie_hash(const sg_u8 key[16], const struct sg_cookie_flow* f, sg_u32 client_isn,
                                sg_u32 counter, sg_u8 mss_index) {
  if (f->v6) return sg_cookie_hash_v6(key, f->src, f->dst, f->sport, f->dport, client_isn, counter, mss_index);
  return sg_cookie_hash_v4(key, f->src, f->dst, f->sport, f->dport, client_isn, counter, mss_index);
}

/* The ISN of the SYN-ACK answering a SYN with `client_isn` (flow: client -> server). */
SG_INLINE sg_u32 sg_cookie_make(const struct sg_cookie_secrets* s, const struct sg_cookie_flow* f,
                                sg_u32 client_isn, sg_u16 client_mss, sg_u32 counter) {
  const sg_u8 mss_index = sg_cookie_mss_index(client_mss);
  const sg_u32 h = sg_cookie_hash(sg_cookie_key_for(s, counter), f, client_isn, counter, mss_index);
  return h << (32 - SG_COOKIE_HASH_BITS) | (counter & SG_COOKIE_COUNTER_MASK) << SG_COOKIE_COUNTER_SHIFT |
         mss_index;
}

/* For the client's ACK (flow: client -> server): client_isn = seq - 1, cookie = ack - 1. Returns
 * the MSS the cookie carries (a table entry), or 0 when it is forged, expired or for another
 * flow. The cookie carries counter mod 4; its age is the distance back from now in that ring, so
 * a cookie from the future looks 1..3 ticks old and then fails the hash over the full counter. */
SG_INLINE sg_u16 sg_cookie_check(const struct sg_cookie_secrets* s, const struct sg_cookie_flow* f,
                                 sg_u32 client_isn, sg_u32 cookie, sg_u32 counter) {
  const sg_u32 age = (counter - (cookie >> SG_COOKIE_COUNTER_SHIFT)) & SG_COOKIE_COUNTER_MASK;
  const sg_u32 max_age = s->max_age < SG_COOKIE_MAX_AGE ? s->max_age : SG_COOKIE_MAX_AGE;
  if (age > max_age) return 0;
  const sg_u32 made_at = counter - age;
  const sg_u8 mss_index = (sg_u8)(cookie & SG_COOKIE_MSS_MASK);
  const sg_u32 h = sg_cookie_hash(sg_cookie_key_for(s, made_at), f, client_isn, made_at, mss_index);
  if (h != cookie >> (32 - SG_COOKIE_HASH_BITS)) {
    /* A rotation dates the new key from the tick it happens in (current_since = the counter of
     * now), so cookies made earlier in that tick carry the previous key: without this their
     * clients' ACKs, and every retransmission of them, fail until the handshake times out. Only
     * that one tick gets the second try. */
    if (made_at != s->current_since) return 0;
    const sg_u32 h_previous = sg_cookie_hash(s->previous, f, client_isn, made_at, mss_index);
    if (h_previous != cookie >> (32 - SG_COOKIE_HASH_BITS)) return 0;
  }
  return sg_cookie_mss_value(mss_index);
}

/* ---- Timestamp option bits ------------------------------------------------------------------ */

struct sg_syn_option_bits {
  sg_u8 has_wscale;
  sg_u8 wscale;
  sg_u8 sack_permitted;
  sg_u8 ecn;
};

/* What syngate knows of a service's backend, as the XDP program's service map stores it (the
 * engine's BackendFacts answers the same question for the NFQUEUE path). */
#define SG_SERVICE_PROTECTED 0x01u
#define SG_SERVICE_BACKEND_LACKS_SACK 0x02u
/* The backend answered syngate's SYN with timestamps: a client promised them needs none supplied,
 * so its SYN to the backend leaves no room for them (backend_syn_spec.h). */
#define SG_SERVICE_BACKEND_HAS_TIMESTAMPS 0x04u

/* Whether a cookie SYN-ACK promises SACK to a client that offers it. Not when the service's
 * backend recently answered our SYN without SACK-permitted: the client, told SACK is on, would
 * get the backend's duplicate ACKs without SACK blocks, which a SACK sender (Linux with RACK)
 * does not count as a loss signal, so every segment lost on its way to the backend would wait
 * for a retransmission timeout (uploads 50x slower at 1% loss). A client never promised SACK
 * recovers from the same duplicate ACKs at once (NewReno). */
SG_INLINE sg_u8 sg_promise_sack(sg_u8 client_offers_sack, sg_u32 service_flags) {
  return client_offers_sack && !(service_flags & SG_SERVICE_BACKEND_LACKS_SACK);
}

/* Our SYN-ACK TSval: now_ts with its low 6 bits replaced by the option bits, never ahead of
 * now_ts. Stepping back one period rather than running ahead keeps the backend's later
 * timestamps (offset to ours) from ever looking older to the client than the SYN-ACK's (PAWS).
 * Unsigned wrap is intended when now_ts < 64: serially that value still lies just before. */
SG_INLINE sg_u32 sg_encode_ts_options(sg_u32 now_ts, const struct sg_syn_option_bits* b) {
  sg_u32 options = b->has_wscale ? (b->wscale < SG_MAX_WSCALE ? b->wscale : SG_MAX_WSCALE) : 0xFu;
  if (b->sack_permitted) options |= 1u << 4;
  if (b->ecn) options |= 1u << 5;
  sg_u32 ts = (now_ts & ~SG_TS_OPTION_MASK) | options;
  if (ts > now_ts) ts -= SG_TS_OPTION_MASK + 1;
  return ts;
}

SG_INLINE struct sg_syn_option_bits sg_decode_ts_options(sg_u32 echoed_tsval) {
  struct sg_syn_option_bits b;
  const sg_u32 wscale = echoed_tsval & 0xFu;
  /* 15 means "no window scale"; nothing exists between 14 and 15. */
  b.has_wscale = wscale != 0xFu;
  b.wscale = b.has_wscale ? (sg_u8)wscale : 0;
  b.sack_permitted = (echoed_tsval >> 4) & 1u;
  b.ecn = (echoed_tsval >> 5) & 1u;
  return b;
}

#endif /* SYNGATE_SPEC_COOKIE_SPEC_H */
