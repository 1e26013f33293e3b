# cmake -DIN=file -DOUT=file.c -DSYMBOL=name -P embed.cmake: writes a C array of IN's bytes.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR size "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from ${IN}: do not edit. */\n#include <stddef.h>\n"
     "const unsigned char ${SYMBOL}[] = {\n${body}0};\nconst size_t ${SYMBOL}_size = ${size};\n")
