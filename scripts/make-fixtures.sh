#!/usr/bin/env bash
# Regenerates the end-to-end test fixtures in crates/local/tests/fixtures/.
#
# Run by hand (not in CI); commit the generated files. Output is deterministic
# except encrypted.pdf (qpdf's AES-256 encryption uses random salts and keys).
#
# Needs these Debian packages:
#   groff          (full groff: groff-base alone lacks the gropdf PDF device)
#   qpdf           (normalising, checking and encrypting PDFs)
#   poppler-utils  (pdftotext/pdfinfo, to verify the result)
#   python3        (to write damaged.pdf and notes.bin)
#   apt-get update && apt-get install -y groff qpdf poppler-utils python3
#
# Usage: scripts/make-fixtures.sh [OUT_DIR]   (default crates/local/tests/fixtures)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
out="${1:-$repo_root/crates/local/tests/fixtures}"
mkdir -p "$out"

for tool in groff gropdf qpdf pdftotext pdfinfo python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "make-fixtures: '$tool' not found; install: apt-get install -y groff qpdf poppler-utils python3" >&2
        exit 1
    }
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/make-fixtures.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# groff -Tpdf stamps the current time into /CreationDate and /ModDate; replace
# it with a fixed date of the same length (so xref offsets stay valid), then let
# qpdf rewrite the file with a deterministic /ID.
normalise_pdf() { # in out
    sed -E 's/D:[0-9]{14}/D:20240101000000/g' "$1" >"$tmp/dated.pdf"
    qpdf --deterministic-id "$tmp/dated.pdf" "$2"
}

groff_pdf() { # in.ms out.pdf  (-t: tbl preprocessor, -ms macros, A4 paper)
    groff -t -ms -Tpdf -dpaper=a4 -P-pa4 "$1" >"$tmp/raw.pdf"
    normalise_pdf "$tmp/raw.pdf" "$2"
}

###############################################################################
# printer-manual.pdf: 6 pages, one topic per page (explicit .bp page breaks).
###############################################################################
cat >"$tmp/printer-manual.ms" <<'EOF'
.\" No hyphenation, ragged right: keeps every word whole for text extraction.
.nh
.ad l
.ds LH Acme LaserJet 200
.ds CH
.ds RH User Manual
.ds CF Page %
.nr PS 11
.nr VS 14
.\" -ms re-enables hyphenation in every paragraph unless HY is 0.
.nr HY 0
.TL
Acme LaserJet 200 User Manual
.AB no
Model AL-200. Please read this manual carefully before using the printer and keep it for future reference.
.AE
.NH
Safety information
.PP
The Acme LaserJet 200 is designed for indoor office use only. Place the printer on a flat, stable surface with at least 10 cm of free space on every side so that the ventilation openings are never blocked. Do not expose the printer to direct sunlight, rain or high humidity.
.PP
Connect the power cord only to a grounded electrical outlet that matches the voltage shown on the rating label at the back of the printer. Never use a damaged power cord. If liquid enters the printer, switch it off immediately, unplug it and contact Acme customer service.
.PP
The fuser unit inside the printer becomes very hot during operation. Wait at least 30 minutes after switching the printer off before you touch any part inside the front cover. Keep the printer and its consumables out of the reach of children.
.PP
Caution: this product contains a Class 1 laser. Do not open the laser scanner unit and never look into the laser beam.
.bp
.NH
Loading paper
.PP
The main paper tray holds up to 250 sheets of plain paper (80 g/m\s-2\u2\d\s+2). Supported paper sizes are A4, A5, Letter and Legal. Always use paper that is dry, flat and undamaged; curled or damp paper is a common cause of paper jams.
.PP
To load paper into the main tray:
.IP 1. 4
Pull the paper tray completely out of the printer.
.IP 2. 4
Slide the paper width guides and the length guide outward to their widest position.
.IP 3. 4
Fan the stack of paper and tap it on a flat surface to align the edges.
.IP 4. 4
Place the stack in the tray with the print side facing down. Do not fill the tray above the maximum fill mark.
.IP 5. 4
Slide the guides inward until they lightly touch the edges of the stack.
.IP 6. 4
Push the tray back into the printer until it clicks into place.
.PP
To print on envelopes or thick paper, use the manual feed slot at the front of the printer and insert one sheet at a time, print side up.
.bp
.NH
Replacing the ink cartridge
.PP
The Acme LaserJet 200 uses one black ink cartridge (part number AC-200K, also called the toner cartridge). A standard cartridge prints about 1,500 pages. When the ink level is low, the Ink light on the control panel blinks; when the cartridge is empty, the Ink light stays on and printing stops.
.PP
To replace the ink cartridge:
.IP 1. 4
Make sure the printer is switched on and is not printing.
.IP 2. 4
Open the front cover by pulling the handle on the top edge towards you.
.IP 3. 4
Wait until the cartridge holder moves to the replacement position.
.IP 4. 4
Press the blue release lever and lift the old cartridge out of the holder.
.IP 5. 4
Unpack the new cartridge and gently shake it from side to side five or six times to distribute the ink.
.IP 6. 4
Remove the orange protective strip from the new cartridge.
.IP 7. 4
Insert the new cartridge into the holder until it clicks into place.
.IP 8. 4
Close the front cover. The printer prints a test page automatically.
.PP
Return empty cartridges to your Acme dealer for free recycling. Do not throw them into household waste.
.bp
.NH
Clearing a paper jam
.PP
If a sheet of paper gets stuck inside the printer, the Jam light turns red and printing stops. Never pull jammed paper out with force and never use sharp tools such as knives or scissors.
.PP
To clear a paper jam:
.IP 1. 4
Switch the printer off and wait 30 minutes for the fuser unit to cool down.
.IP 2. 4
Open the rear access door.
.IP 3. 4
Hold the jammed sheet with both hands and pull it out slowly in the direction of the paper path.
.IP 4. 4
Pull out the paper tray and remove any loose or crumpled sheets.
.IP 5. 4
Close the rear access door and push the paper tray back in.
.IP 6. 4
Switch the printer on again. The printer resumes the interrupted print job.
.NH
Control panel lights
.PP
The lights on the control panel show the state of the printer:
.TS
center tab(|);
lB lB lB
l l l.
Light|State|Meaning
_
Power|green, steady|Ready to print
Power|green, blinking|Printing or warming up
Ink|orange, blinking|Ink level is low
Ink|orange, steady|Ink cartridge is empty
Jam|red, steady|Paper jam
Jam|red, blinking|Rear access door is open
.TE
.bp
.NH
Warranty
.PP
Acme Corporation warrants this printer against defects in materials and workmanship. The warranty period is two years from the date of purchase. Keep your receipt: proof of purchase is required for every warranty claim.
.PP
During the warranty period Acme will repair or replace a defective printer free of charge. The warranty does not cover consumables such as ink cartridges and paper, damage caused by accidents, misuse or unauthorised modifications, or damage caused by third-party ink cartridges.
.PP
To make a warranty claim, contact Acme customer service with the serial number of the printer, which is printed on the label inside the front cover. An extended warranty of one additional year can be purchased within 60 days of the date of purchase.
.bp
.NH
Technical specifications
.LP
Print technology: monochrome laser
.br
Print speed: up to 20 pages per minute (A4)
.br
Print resolution: 1200 x 1200 dpi
.br
First page out: less than 8 seconds
.br
Paper tray capacity: 250 sheets
.br
Weight: 6.8 kg (without paper and cartridge)
.br
Dimensions (W x D x H): 360 x 280 x 190 mm
.br
Power supply: 220\-240 V AC, 50/60 Hz
.br
Power consumption: 380 W while printing, 4 W in sleep mode, 0.5 W when switched off
.br
Noise level: 50 dB while printing
.br
Interfaces: USB 2.0, Ethernet, Wi-Fi
.PP
Operating environment: temperature 10 to 32 \(deC, relative humidity 20 to 80 %.
EOF
groff_pdf "$tmp/printer-manual.ms" "$out/printer-manual.pdf"

###############################################################################
# no-text.pdf: two pages of line drawings only (\D commands), no text at all.
# Page headers/footers are turned off so -ms adds no page numbers.
###############################################################################
cat >"$tmp/no-text.ms" <<'EOF'
.ds LH
.ds CH
.ds RH
.ds LF
.ds CF
.ds RF
.LP
\D'l 3i 0'\D'l 0 2i'\D'l -3i 0'\D'l 0 -2i'
.sp 1i
\D'c 1.5i'
.sp 1i
\D'e 3i 1i'
.bp
.LP
\D'p 1i 0 -0.5i 1i'
.sp 1i
\D'l 4i 1i'
EOF
groff_pdf "$tmp/no-text.ms" "$out/no-text.pdf"

###############################################################################
# encrypted.pdf: a one-page manual, AES-256 with user password "userpw"
# (owner password "ownerpw"): cannot be opened without a password.
###############################################################################
cat >"$tmp/encrypted.ms" <<'EOF'
.nh
.ad l
.nr HY 0
.TL
Acme Confidential Service Manual
.PP
This service manual is protected with a password. The service code for the Acme LaserJet 200 is 7734.
EOF
groff_pdf "$tmp/encrypted.ms" "$tmp/encrypted-plain.pdf"
qpdf --encrypt userpw ownerpw 256 -- "$tmp/encrypted-plain.pdf" "$out/encrypted.pdf"

###############################################################################
# damaged.pdf: the first 400 bytes of printer-manual.pdf (so it starts with
# %PDF-1.4), then 600 bytes of deterministic junk; no xref, no trailer.
# notes.bin: an unsupported binary type (PNG signature + deterministic bytes).
###############################################################################
python3 - "$out" <<'PY'
import hashlib, os, sys
out = sys.argv[1]

def junk(seed: bytes, n: int) -> bytes:
    buf, block = b"", seed
    while len(buf) < n:
        block = hashlib.sha256(block).digest()
        buf += block
    return buf[:n]

with open(os.path.join(out, "printer-manual.pdf"), "rb") as f:
    head = f.read(400)
assert head.startswith(b"%PDF-1.4"), head[:16]
with open(os.path.join(out, "damaged.pdf"), "wb") as f:
    f.write(head + junk(b"manuel-damaged", 600))

png_sig = b"\x89PNG\r\n\x1a\n"
ihdr = b"\x00\x00\x00\x0dIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00\x90\x91\x68\x36"
with open(os.path.join(out, "notes.bin"), "wb") as f:
    f.write(png_sig + ihdr + junk(b"manuel-notes", 200))
PY

###############################################################################
# coffee-machine.md and router-notes.txt
###############################################################################
cat >"$out/coffee-machine.md" <<'EOF'
# BrewMaster 3000 Espresso Machine – User Manual

Thank you for choosing the BrewMaster 3000. This manual explains how to care
for your machine. Model number: BM-3000.

## Descaling

Limescale builds up in the machine over time and affects the taste of your
coffee and the life of the heater. Descale the machine when the orange
descaling light comes on, or at the latest every 3 months. Use only
BrewMaster descaling liquid; never use vinegar, because it damages the seals.
A full descaling cycle takes about 25 minutes.

1. Empty the drip tray and the coffee grounds container.
2. Remove the water filter from the water tank, if one is fitted.
3. Pour 100 ml of BrewMaster descaling liquid into the water tank and fill
   the tank with fresh water up to the 0.5 l mark.
4. Place a container that holds at least 1 litre under the coffee outlet and
   the hot water nozzle.
5. Press and hold the Clean button for 5 seconds until the descaling light
   blinks. The descaling program starts.
6. When the machine stops and the water light comes on, rinse the water tank
   and fill it with fresh water up to the MAX mark.
7. Press the Clean button again to start the rinsing cycle. When the
   descaling light goes out, descaling is complete.

## Cleaning the milk frother

Clean the milk frother after every use so that milk residue does not dry
and block the nozzle.

1. Place a cup under the frother nozzle and turn the steam knob for
   3 seconds to blow out milk residue.
2. Switch the machine off and let the frother cool down for 2 minutes.
3. Pull the frother sleeve off the steam pipe.
4. Rinse the sleeve and the nozzle under warm running water. Clear a
   blocked nozzle with the cleaning needle supplied with the machine.
5. Wipe the steam pipe with a damp cloth.
6. Push the sleeve back onto the steam pipe until it is firmly seated.

The frother sleeve is dishwasher safe (top rack only).

## Water hardness setting

The machine is set to water hardness level 3 when it leaves the factory.
Setting the correct water hardness makes sure that the descaling light comes
on at the right time. Test your tap water with the test strip supplied with
the machine, then set the level:

1. With the machine switched off, press and hold the Hot Water button.
2. Switch the machine on while you keep holding the button; after 3 seconds
   the lights show the current level.
3. Press the Hot Water button repeatedly to choose a level from 1 (soft
   water) to 4 (very hard water).
4. Press the Clean button to save the setting.

| Level | Water hardness | Descale after about |
|-------|----------------|---------------------|
| 1     | soft (0–7 °dH)       | 500 cups |
| 2     | medium (7–14 °dH)    | 300 cups |
| 3     | hard (14–21 °dH)     | 200 cups |
| 4     | very hard (> 21 °dH) | 100 cups |

## Troubleshooting

### The machine does not heat up

- Check that the power plug is firmly connected and that the main switch on
  the back of the machine is set to I.
- The machine needs about 45 seconds to heat up after it is switched on.
  Wait until the ready light stops blinking.
- If the machine still stays cold, the overheating protection may have
  tripped: switch it off, let it cool down for 30 minutes and switch it on
  again. If the problem persists, contact BrewMaster service.

### Coffee comes out too slowly or only drips

- The coffee is ground too finely: choose a coarser grind setting.
- The machine needs descaling: see *Descaling*.

### The coffee is not hot enough

- Preheat the cups with hot water.
- Descale the machine: limescale reduces the heater's efficiency.

### Water leaks under the machine

- The drip tray is full: empty it.
- The water tank is not seated correctly: remove it and push it firmly back
  into place.

## Warranty

The BrewMaster 3000 comes with a warranty of 18 months from the date of
purchase. Keep your receipt, as proof of purchase is required for every
claim. The warranty covers manufacturing defects. It does not cover damage
caused by limescale because the machine was not descaled, damage from
using vinegar or other unsuitable descaling products, broken glass parts, or
commercial use. To make a claim, contact BrewMaster service or return the
machine to the shop where you bought it.
EOF

cat >"$out/router-notes.txt" <<'EOF'
NETSTREAM AX1800 WIFI ROUTER - QUICK REFERENCE NOTES
===================================================

These notes cover the NetStream AX1800 dual-band wifi router (model NS-1800).
Keep them together with the sticker on the bottom of the router, which shows
the default wifi name (SSID) and the default wifi password.


Getting connected
-----------------

Connect the yellow WAN port on the back of the router to your modem with the
supplied network cable. Connect the power adapter and press the power button.
The power light turns solid green after about 2 minutes. Then connect your
computer or phone to the wifi network printed on the sticker.


Logging in to the admin page
----------------------------

Open a web browser on a device connected to the router and enter the default
admin address 192.168.1.1 in the address bar. The default user name is admin
and the default password is printed on the sticker on the bottom of the
router. You will be asked to choose a new admin password when you log in for
the first time.


Wifi bands
----------

The router broadcasts two wifi networks: 2.4 GHz for long range and older
devices, and 5 GHz for higher speed at shorter range. Both use the same
password by default. You can change the network names under Wireless >
Basic Settings on the admin page.


Status lights
-------------

Power  solid green     the router is on
WAN    solid green     connected to the internet
WAN    orange          no internet connection: check the modem cable
Wifi   blinking green  data is being transferred
Wifi   off             wifi has been switched off with the Wifi button


Resetting the router to factory settings
----------------------------------------

A factory reset erases all your settings, including the wifi name, the wifi
password and the admin password. Use it if you have forgotten the admin
password.

  1. Leave the router switched on.
  2. Find the small RESET hole on the back of the router.
  3. Press and hold the button inside the hole with a straightened paper clip
     for at least 10 seconds, until all lights blink at once.
  4. Release the button. The router restarts; this takes about 3 minutes.
  5. Connect to the default wifi network shown on the sticker.
  6. Log in to the admin page at 192.168.1.1 with the default password from
     the sticker and set up the router again.

To simply restart the router without losing settings, press the power button
once, wait 10 seconds and press it again.


Firmware updates
----------------

The router checks for new firmware every night at 03:00 and installs it
automatically. To update by hand, go to System > Firmware Update on the
admin page and click Check now. Never switch the router off during an update.


Warranty
--------

NetStream routers carry a 3-year limited warranty from the date of purchase.
EOF

###############################################################################
# Verify.
###############################################################################
for f in printer-manual no-text; do
    qpdf --check "$out/$f.pdf" >/dev/null
done
qpdf --check --password=userpw "$out/encrypted.pdf" >/dev/null
pages="$(pdfinfo "$out/printer-manual.pdf" | awk '/^Pages:/ {print $2}')"
[[ "$pages" == 6 ]] || { echo "make-fixtures: printer-manual.pdf has $pages pages, expected 6" >&2; exit 1; }
if [[ -n "$(pdftotext "$out/no-text.pdf" - | tr -d '[:space:]')" ]]; then
    echo "make-fixtures: no-text.pdf unexpectedly contains text" >&2
    exit 1
fi
ls -l "$out"
