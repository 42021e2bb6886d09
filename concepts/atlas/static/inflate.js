/* concepts atlas: atlasInflate(base64) -> text, a raw DEFLATE (RFC 1951) decoder for the pages' data files
   (concepts/atlas/packed.py writes them). Synchronous, so that a page drawn from its data is complete before
   atlas.js runs and before the load event, as a static page; no network access. */
(function () {
  "use strict";
  var LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
               227, 258];
  var LEXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
  var DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
               4097, 6145, 8193, 12289, 16385, 24577];
  var DEXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
  var ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

  // a canonical Huffman code from its code lengths: how many codes of each length, the symbols by code
  var code = function (lengths) {
    var count = new Uint16Array(16), offset = new Uint16Array(16), symbols = new Uint16Array(lengths.length), i;
    for (i = 0; i < lengths.length; i += 1) { count[lengths[i]] += 1; }
    count[0] = 0;
    for (i = 1; i < 16; i += 1) { offset[i] = offset[i - 1] + count[i - 1]; }
    for (i = 0; i < lengths.length; i += 1) { if (lengths[i]) { symbols[offset[lengths[i]]++] = i; } }
    return { count: count, symbols: symbols };
  };
  var fixedLengths = function (n, spans) {
    var out = [];
    spans.forEach(function (span) { while (out.length < span[0]) { out.push(span[1]); } });
    return out.slice(0, n);
  };
  var FIXED_LIT = code(fixedLengths(288, [[144, 8], [256, 9], [280, 7], [288, 8]]));
  var FIXED_DIST = code(fixedLengths(30, [[30, 5]]));

  window.atlasInflate = function (base64) {
    var raw = window.atob(base64), src = new Uint8Array(raw.length), i;
    for (i = 0; i < raw.length; i += 1) { src[i] = raw.charCodeAt(i); }
    var pos = 0, bit = 0, out = new Uint8Array(Math.max(1024, 4 * src.length)), size = 0;
    var bits = function (n) {  // the next n bits, least significant first
      var value = 0;
      for (var j = 0; j < n; j += 1) {
        if (pos >= src.length) { throw new Error("atlasInflate: the data ends early"); }
        value |= ((src[pos] >> bit) & 1) << j;
        bit += 1;
        if (bit === 8) { bit = 0; pos += 1; }
      }
      return value;
    };
    var room = function (n) {
      if (size + n <= out.length) { return; }
      var bigger = new Uint8Array(Math.max(2 * out.length, size + n));
      bigger.set(out.subarray(0, size));
      out = bigger;
    };
    var decode = function (table) {  // one symbol, reading its code bit by bit (codes are sent most significant first)
      var value = 0, first = 0, index = 0;
      for (var length = 1; length < 16; length += 1) {
        value |= bits(1);
        var count = table.count[length];
        if (value - first < count) { return table.symbols[index + value - first]; }
        index += count;
        first = (first + count) << 1;
        value <<= 1;
      }
      throw new Error("atlasInflate: bad code");
    };
    var block = function (lit, dist) {
      for (;;) {
        var symbol = decode(lit);
        if (symbol < 256) { room(1); out[size++] = symbol; continue; }
        if (symbol === 256) { return; }
        symbol -= 257;
        if (symbol >= 29) { throw new Error("atlasInflate: bad length"); }
        var length = LBASE[symbol] + bits(LEXTRA[symbol]);
        var d = decode(dist);
        if (d >= 30) { throw new Error("atlasInflate: bad distance"); }
        var back = DBASE[d] + bits(DEXTRA[d]);
        if (back > size) { throw new Error("atlasInflate: distance too far back"); }
        room(length);
        for (var k = 0; k < length; k += 1) { out[size] = out[size - back]; size += 1; }
      }
    };
    var last;
    do {
      last = bits(1);
      var type = bits(2);
      if (type === 0) {  // stored
        if (bit) { bit = 0; pos += 1; }  // to the next byte
        if (pos + 4 > src.length) { throw new Error("atlasInflate: the data ends early"); }
        var n = src[pos] | (src[pos + 1] << 8);
        pos += 4;
        if (pos + n > src.length) { throw new Error("atlasInflate: the data ends early"); }
        room(n);
        out.set(src.subarray(pos, pos + n), size);
        size += n;
        pos += n;
      } else if (type === 1) {
        block(FIXED_LIT, FIXED_DIST);
      } else if (type === 2) {  // dynamic codes
        var nlit = bits(5) + 257, ndist = bits(5) + 1, nclen = bits(4) + 4, clen = new Array(19).fill(0);
        for (i = 0; i < nclen; i += 1) { clen[ORDER[i]] = bits(3); }
        var lengthCode = code(clen), lengths = [];
        while (lengths.length < nlit + ndist) {
          var s = decode(lengthCode);
          if (s < 16) { lengths.push(s); continue; }
          var repeat, value = 0;
          if (s === 16) {
            if (!lengths.length) { throw new Error("atlasInflate: repeat with no length"); }
            value = lengths[lengths.length - 1];
            repeat = 3 + bits(2);
          } else if (s === 17) {
            repeat = 3 + bits(3);
          } else {
            repeat = 11 + bits(7);
          }
          while (repeat--) { lengths.push(value); }
        }
        if (lengths.length > nlit + ndist) { throw new Error("atlasInflate: too many lengths"); }
        block(code(lengths.slice(0, nlit)), code(lengths.slice(nlit)));
      } else {
        throw new Error("atlasInflate: bad block type");
      }
    } while (!last);
    return new TextDecoder("utf-8").decode(out.subarray(0, size));
  };
})();
