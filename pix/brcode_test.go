package pix

import (
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"mutuo/lending"
)

// The central bank's static example ("Manual de Padrões para Iniciação do
// Pix"), copied from ../shared/reference/brcode-vectors.txt into testdata.
const bcbStatic = "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D"

// readVectors returns the payload lines of testdata/brcode-vectors.txt.
func readVectors(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile("testdata/brcode-vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestCRC16(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"", 0xFFFF},
		{"123456789", 0x29B1}, // the CRC-16/CCITT-FALSE check value
		{"A", 0xB915},
		{bcbStatic[:len(bcbStatic)-4], 0x1D3D},
	}
	for _, tt := range tests {
		if got := CRC16([]byte(tt.in)); got != tt.want {
			t.Errorf("CRC16(%q) = %04X, want %04X", tt.in, got, tt.want)
		}
	}
}

// Every published vector decodes, and the central bank's example decodes to
// the documented fields and re-encodes identically, byte for byte.
func TestVectors(t *testing.T) {
	vectors := readVectors(t)
	if len(vectors) == 0 || vectors[0] != bcbStatic {
		t.Fatalf("testdata vectors: %q", vectors)
	}
	for _, v := range vectors {
		if got := fmt.Sprintf("%04X", CRC16([]byte(v[:len(v)-4]))); got != v[len(v)-4:] {
			t.Errorf("vector %q: CRC %s", v, got)
		}
		b, err := Decode(v)
		if err != nil {
			t.Fatalf("Decode(%q): %v", v, err)
		}
		again, err := Encode(b)
		if err != nil || again != v {
			t.Errorf("re-encoded\n %q, %v\nwant\n %q", again, err, v)
		}
	}
	b, _ := Decode(bcbStatic)
	want := BRCode{Key: "123e4567-e12b-12d1-a456-426655440000", MerchantName: "Fulano de Tal", MerchantCity: "BRASILIA"}
	if b != want {
		t.Errorf("Decode = %+v, want %+v", b, want)
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		b    BRCode
		want string // without the CRC; "" means BAD_USER_INPUT
	}{
		{"static with amount and txid",
			BRCode{Key: "+5511987654321", MerchantName: "MUTUO", MerchantCity: "SAO PAULO", Txid: "DEP123", Amount: 12345},
			"000201" + "26360014br.gov.bcb.pix0114+5511987654321" + "52040000" + "5303986" + "5406123.45" +
				"5802BR" + "5905MUTUO" + "6009SAO PAULO" + "62100506DEP123" + "6304"},
		{"description",
			BRCode{Key: "a@b.co", MerchantName: "X", MerchantCity: "Y", Description: "Pedido 42"},
			"000201" + "26410014br.gov.bcb.pix0106a@b.co0209Pedido 42" + "52040000" + "5303986" +
				"5802BR" + "5901X" + "6001Y" + "62070503***" + "6304"},
		{"dynamic",
			BRCode{URL: "pix.example.com/v2/cob/abc", MerchantName: "X", MerchantCity: "Y", Amount: 1},
			"000201" + "010212" + "26480014br.gov.bcb.pix2526pix.example.com/v2/cob/abc" + "52040000" + "5303986" +
				"54040.01" + "5802BR" + "5901X" + "6001Y" + "62070503***" + "6304"},
		{"no key or url", BRCode{MerchantName: "X", MerchantCity: "Y"}, ""},
		{"key and url", BRCode{Key: "k", URL: "u", MerchantName: "X", MerchantCity: "Y"}, ""},
		{"url with scheme", BRCode{URL: "https://pix.example.com/x", MerchantName: "X", MerchantCity: "Y"}, ""},
		{"no name", BRCode{Key: "k", MerchantCity: "Y"}, ""},
		{"name too long", BRCode{Key: "k", MerchantName: strings.Repeat("N", 26), MerchantCity: "Y"}, ""},
		{"no city", BRCode{Key: "k", MerchantName: "X"}, ""},
		{"city too long", BRCode{Key: "k", MerchantName: "X", MerchantCity: strings.Repeat("C", 16)}, ""},
		{"accented", BRCode{Key: "k", MerchantName: "João", MerchantCity: "Y"}, ""},
		{"txid too long for a static code", BRCode{Key: "k", MerchantName: "X", MerchantCity: "Y", Txid: strings.Repeat("a", 26)}, ""},
		{"txid not alnum", BRCode{Key: "k", MerchantName: "X", MerchantCity: "Y", Txid: "***"}, ""},
		{"txid in dynamic code", BRCode{URL: "u.example/x", MerchantName: "X", MerchantCity: "Y", Txid: "abc"}, ""},
		{"negative amount", BRCode{Key: "k", MerchantName: "X", MerchantCity: "Y", Amount: -1}, ""},
		{"amount too large", BRCode{Key: "k", MerchantName: "X", MerchantCity: "Y", Amount: 1_000_000_000_000}, ""},
		{"key too long", BRCode{Key: strings.Repeat("k", 78), MerchantName: "X", MerchantCity: "Y"}, ""},
		{"template too long", BRCode{Key: strings.Repeat("k", 77), Description: "d", MerchantName: "X", MerchantCity: "Y"}, ""},
		{"control char", BRCode{Key: "k\n", MerchantName: "X", MerchantCity: "Y"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.b)
			if tt.want == "" {
				if !lending.IsCode(err, lending.CodeBadUserInput) {
					t.Fatalf("= %q, %v; want BAD_USER_INPUT", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.want) || len(got) != len(tt.want)+4 {
				t.Fatalf("=\n %q\nwant\n %sXXXX", got, tt.want)
			}
			if crc := fmt.Sprintf("%04X", CRC16([]byte(tt.want))); got[len(got)-4:] != crc {
				t.Errorf("CRC %s, want %s", got[len(got)-4:], crc)
			}
		})
	}
}

// withCRC appends a correct CRC field to body (which ends before "6304").
func withCRC(body string) string {
	body += "6304"
	return body + fmt.Sprintf("%04X", CRC16([]byte(body)))
}

func TestDecodeAccepts(t *testing.T) {
	base := "0014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-426655440000"
	tail := "52040000" + "5303986" + "5802BR" + "5913Fulano de Tal" + "6008BRASILIA" + "62070503***"
	tests := []struct {
		name    string
		payload string
		want    BRCode
	}{
		{"lower-case CRC", bcbStatic[:len(bcbStatic)-4] + "1d3d",
			BRCode{Key: "123e4567-e12b-12d1-a456-426655440000", MerchantName: "Fulano de Tal", MerchantCity: "BRASILIA"}},
		{"upper-case GUI, 01 11, extra fields ignored",
			withCRC("000201" + "010211" + "2658" + strings.Replace(base, "br.gov.bcb.pix", "BR.GOV.BCB.PIX", 1) +
				"27280012br.gov.other0108whatever" + tail[:len(tail)-11] + "61080123456762140503***0703abc" + "80050001x"),
			BRCode{Key: "123e4567-e12b-12d1-a456-426655440000", MerchantName: "Fulano de Tal", MerchantCity: "BRASILIA"}},
		{"fields out of order, amount without decimals",
			withCRC("000201" + "5303986" + "5802BR" + "540210" + "2658" + base + "52040000" + "5913Fulano de Tal" +
				"6008BRASILIA" + "62070503***"),
			BRCode{Key: "123e4567-e12b-12d1-a456-426655440000", MerchantName: "Fulano de Tal", MerchantCity: "BRASILIA", Amount: 1000}},
		{"static with txid",
			withCRC("000201" + "2658" + base + "52040000" + "5303986" + "5802BR" + "5913Fulano de Tal" + "6008BRASILIA" + "62100506PED042"),
			BRCode{Key: "123e4567-e12b-12d1-a456-426655440000", MerchantName: "Fulano de Tal", MerchantCity: "BRASILIA", Txid: "PED042"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.payload)
			if err != nil || got != tt.want {
				t.Fatalf("Decode(%q) = %+v, %v; want %+v", tt.payload, got, err, tt.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tail := "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070503***"
	mai := "26180014br.gov.bcb.pix"
	key := "26250014br.gov.bcb.pix0103abc"
	flip := []byte(bcbStatic)
	flip[40] ^= 1
	tests := []struct{ name, payload string }{
		{"empty", ""},
		{"short", "6304ABCD"},
		{"bad CRC", bcbStatic[:len(bcbStatic)-1] + "E"},
		{"flipped bit", string(flip)},
		{"CRC not hex", bcbStatic[:len(bcbStatic)-4] + "1D3G"},
		{"no CRC field", bcbStatic[:len(bcbStatic)-8]},
		{"trailing data", bcbStatic + "00"},
		{"non-ASCII", withCRC("000201" + key + "52040000" + "5303986" + "5802BR" + "5905Jo\u00e3o" + "6001Y" + "62070503***")},
		{"not first 00", withCRC(key + "000201" + tail)},
		{"format 02", withCRC("000202" + key + tail)},
		{"truncated length", withCRC("000201" + key + tail + "99")},
		{"length past end", withCRC("000201" + key + tail + "5099ab")},
		{"zero length", withCRC("000201" + key + tail + "5000")},
		{"non-digit id", withCRC("000201" + key + tail + "5A01x")},
		{"repeated field", withCRC("000201" + key + tail + "5802BR")},
		{"repeated subfield", withCRC("000201" + "26320014br.gov.bcb.pix0103abc0103abc" + tail)},
		{"bad template", withCRC("000201" + "26050014b" + tail)},
		{"no pix template", withCRC("000201" + "26160012br.gov.other" + tail)},
		{"two pix templates", withCRC("000201" + key + "27250014br.gov.bcb.pix0103abc" + tail)},
		{"no key nor url", withCRC("000201" + mai + tail)},
		{"key and url", withCRC("000201" + "26320014br.gov.bcb.pix0103abc2503u.x" + tail)},
		{"point of initiation", withCRC("000201" + "010213" + key + tail)},
		{"currency", withCRC("000201" + key + "52040000" + "5303840" + "5802BR" + "5901X" + "6001Y" + "62070503***")},
		{"country", withCRC("000201" + key + "52040000" + "5303986" + "5802US" + "5901X" + "6001Y" + "62070503***")},
		{"mcc", withCRC("000201" + key + "5204abcd" + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070503***")},
		{"no mcc", withCRC("000201" + key + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070503***")},
		{"zero amount", withCRC("000201" + key + "54040.00" + tail)},
		{"amount 3 decimals", withCRC("000201" + key + "54051.000" + tail)},
		{"negative amount", withCRC("000201" + key + "5405-1.00" + tail)},
		{"no name", withCRC("000201" + key + "52040000" + "5303986" + "5802BR" + "6001Y" + "62070503***")},
		{"no 62", withCRC("000201" + key + "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y")},
		{"62 without 05", withCRC("000201" + key + "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070703***")},
		{"txid too long", withCRC("000201" + key + "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y" + "6230" + "0526" + strings.Repeat("a", 26))},
		{"txid in dynamic", withCRC("000201" + "26230014br.gov.bcb.pix2501u" + "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070503abc")},
		{"too long", withCRC("000201" + key + tail + strings.Repeat("8003abc", 70))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.payload)
			if !lending.IsCode(err, lending.CodeBadUserInput) || got != (BRCode{}) {
				t.Fatalf("Decode(%q) = %+v, %v; want BAD_USER_INPUT", tt.payload, got, err)
			}
		})
	}
}

// randomBRCode builds a valid BRCode from r.
func randomBRCode(r *rand.Rand) BRCode {
	str := func(alphabet string, min, max int) string {
		n := min + r.Intn(max-min+1)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.Intn(len(alphabet))]
		}
		return string(b)
	}
	const printableASCII = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
	const alnumChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := BRCode{
		MerchantName: str(printableASCII, 1, MaxMerchantNameLen),
		MerchantCity: str(printableASCII, 1, MaxMerchantCityLen),
	}
	if r.Intn(2) == 0 {
		b.Key = str(printableASCII, 1, 60)
		if r.Intn(2) == 0 {
			b.Txid = str(alnumChars, 1, MaxStaticTxidLen)
		}
	} else {
		b.URL = "pix.example.com/" + str(alnumChars, 1, 40)
	}
	if r.Intn(2) == 0 {
		b.Description = str(printableASCII, 1, 99-18-4-len(b.Key)-len(b.URL)-4)
	}
	switch r.Intn(3) {
	case 0:
		b.Amount = lending.Money(1 + r.Int63n(9_999_999_999_99))
	case 1:
		b.Amount = lending.Money(1 + r.Int63n(100_000_00))
	}
	return b
}

// Property: Decode(Encode(b)) == b for every valid b, and the payload has a
// correct CRC.
func TestRoundTripProperty(t *testing.T) {
	f := func(seed int64) bool {
		b := randomBRCode(rand.New(rand.NewSource(seed)))
		s, err := Encode(b)
		if err != nil {
			t.Logf("Encode(%+v): %v", b, err)
			return false
		}
		got, err := Decode(s)
		if err != nil || !reflect.DeepEqual(got, b) {
			t.Logf("Decode(Encode(%+v)) = %+v, %v", b, got, err)
			return false
		}
		// Any single-character change is detected.
		r := rand.New(rand.NewSource(seed + 1))
		mut := []byte(s)
		i := r.Intn(len(mut))
		mut[i] = byte(0x20 + (int(mut[i])-0x20+1+r.Intn(93))%95)
		if _, err := Decode(string(mut)); err == nil && !strings.EqualFold(string(mut), s) {
			t.Logf("mutated %q decoded", mut)
			return false
		}
		return true
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 2000}); err != nil {
		t.Error(err)
	}
}

// FuzzDecode: Decode never panics; whatever it accepts re-encodes, and the
// re-encoding decodes to the same BRCode and is itself a fixed point.
func FuzzDecode(f *testing.F) {
	for _, v := range readVectors(f) {
		f.Add(v)
	}
	f.Add(withCRC("000201" + "010212" + "26480014br.gov.bcb.pix2526pix.example.com/v2/cob/abc" + "52040000" + "5303986" +
		"54040.01" + "5802BR" + "5901X" + "6001Y" + "62070503***"))
	f.Add(withCRC("000201" + "2658" + "0014BR.GOV.BCB.PIX0136123e4567-e12b-12d1-a456-426655440000" + "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070503***"))
	f.Add("000201" + "26250014br.gov.bcb.pix0103abc" + "52040000" + "5303986" + "5802BR" + "5901X" + "6001Y" + "62070503***")
	f.Add("")
	f.Add("6304FFFF")
	f.Add("000201")
	f.Fuzz(func(t *testing.T, s string) {
		checkDecode(t, s)
		// Also with a correct CRC appended, so that the fuzzer explores the
		// field structure rather than stopping at the checksum.
		if strings.HasSuffix(s, "6304") {
			s = s[:len(s)-4]
		}
		checkDecode(t, withCRC(s))
	})
}

func checkDecode(t *testing.T, s string) {
	b, err := Decode(s)
	if err != nil {
		if _, ok := lending.AsError(err); !ok {
			t.Fatalf("non-domain error %v", err)
		}
		return
	}
	again, err := Encode(b)
	if err != nil {
		t.Fatalf("Decode accepted %q as %+v but Encode refuses it: %v", s, b, err)
	}
	b2, err := Decode(again)
	if err != nil || b2 != b {
		t.Fatalf("Decode(Encode(%+v)) = %+v, %v", b, b2, err)
	}
	if again2, _ := Encode(b2); again2 != again {
		t.Fatalf("not a fixed point: %q vs %q", again, again2)
	}
}
