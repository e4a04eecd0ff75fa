/*
 * nearmiss_words.c - the word lists of the near-miss guard (nearmiss.c):
 * function words, negations, number words, classes of names whose change
 * changes the question (languages, units, currencies, dates, places,
 * relatives), opposite pairs and synonyms. English only: in another
 * language every word counts as a content word (numbers, names,
 * identifiers and replaced words are still caught; negations and
 * opposites are not known). Words are lower case and unaccented, as the
 * guard folds its input; the guard stems them as it stems the prompts.
 */
#include "cache/nearmiss.h"

const struct nm_list nm_lists[] = {
    {NM_STOP,
     /* articles, pronouns, auxiliaries, prepositions, conjunctions */
     "a an the this that these those it its i me my mine we us our you "
     "your yours he him his she her they them their there here "
     "is are was were be been being am do does did doing done have has "
     "had having can could would will shall should may might must "
     "of in on at to for from by with about as into onto over under "
     "through during while when where why who whom whose which what how "
     "and or but if then so than too very also just even still only "
     "some any each every all both either such same other another "
     "own one one's s t d ll re ve m much many off out up down"
     /* question phrasing and politeness: the same request either way */
     " please kindly tell explain describe define meaning mean means "
     "know want need like wondering wonder help question ask asking "
     "way ways simply possible able exactly actually really basically "
     "usually "
     "typically generally normally tip tips step steps idea ideas "
     "method process guide thing things something anything anyone "
     "someone somebody hi hello hey thanks thank okay ok get got "
     "sure let lets use using used work works difference differ "
     "different compare comparison vs versus"},
    {NM_NEG,
     "not no never none nothing nobody nowhere neither nor cannot "
     "without n't"},
    {NM_LANGUAGE,
     /* programming languages and formats */
     "python rust java javascript typescript go golang c c++ c# f# ruby php "
     "perl swift kotlin scala haskell elixir erlang clojure lua julia "
     "matlab bash shell powershell zsh sql dart zig fortran cobol "
     "pascal ocaml groovy assembly html css r vba objective-c solidity "
     /* human languages */
     " english french german spanish italian portuguese dutch chinese "
     "mandarin cantonese japanese korean russian arabic hindi bengali "
     "urdu turkish polish swedish norwegian danish finnish greek hebrew "
     "thai vietnamese indonesian malay czech hungarian romanian "
     "ukrainian persian farsi swahili latin"},
    {NM_UNIT,
     "meter metre kilometer kilometre centimeter centimetre millimeter "
     "millimetre km cm mm mile inch foot feet yard nautical knot mph kph "
     "kmh gram kilogram milligram kg mg g lb lbs pound ounce oz ton "
     "tonne stone liter litre milliliter millilitre ml gallon quart pint "
     "cup tablespoon teaspoon tbsp tsp celsius fahrenheit kelvin degree "
     "second minute hour day week month year decade century millisecond "
     "ms byte kilobyte megabyte gigabyte terabyte bit kb mb gb tb mbps "
     "gbps watt kilowatt kw kwh volt amp ampere ohm joule kilojoule "
     "calorie kilocalorie kcal horsepower hp newton pascal psi bar acre "
     "hectare cubic square percent"},
    {NM_CURRENCY,
     "usd eur gbp jpy cny inr chf cad aud nzd sek nok dkk pln brl mxn "
     "krw dollar euro yen yuan renminbi rupee franc peso krona krone "
     "zloty real ruble rouble won bitcoin btc ethereum eth"},
    {NM_DATE,
     "january february march april may june july august september "
     "october november december jan feb mar apr jun jul aug sep sept "
     "oct nov dec monday tuesday wednesday thursday friday saturday "
     "sunday mon tue tues wed thu thur thurs fri sat sun weekday weekend "
     "today tomorrow yesterday tonight morning afternoon evening night "
     "noon midnight spring summer autumn fall winter am pm"},
    {NM_PLACE,
     "france spain germany italy portugal england britain uk ireland "
     "scotland wales belgium netherlands holland switzerland austria "
     "poland sweden norway denmark finland greece turkey russia ukraine "
     "china japan korea india pakistan bangladesh indonesia thailand "
     "vietnam philippines malaysia singapore australia zealand canada "
     "usa america mexico brazil argentina chile peru colombia egypt "
     "nigeria kenya ethiopia morocco israel iran iraq saudi qatar uae "
     "dubai paris lyon marseille london manchester berlin munich "
     "hamburg rome milan naples madrid barcelona lisbon porto amsterdam "
     "brussels vienna zurich geneva prague warsaw stockholm oslo "
     "copenhagen helsinki athens istanbul moscow kyiv tokyo osaka kyoto "
     "seoul beijing shanghai delhi mumbai bangkok sydney melbourne "
     "toronto vancouver montreal boston seattle chicago york angeles "
     "texas california florida dublin cork belfast cairo"},
    {NM_RELATIVE,
     "mother mom mum father dad parent sister brother sibling son "
     "daughter child kid wife husband partner grandmother grandma "
     "grandfather grandpa aunt uncle cousin niece nephew"},
};
const size_t nm_lists_len = sizeof(nm_lists) / sizeof(nm_lists[0]);

const char nm_numbers[] =
    "zero=0 two=2 three=3 four=4 five=5 six=6 seven=7 eight=8 "
    "nine=9 ten=10 eleven=11 twelve=12 thirteen=13 fourteen=14 "
    "fifteen=15 sixteen=16 seventeen=17 eighteen=18 nineteen=19 "
    "twenty=20 thirty=30 forty=40 fifty=50 sixty=60 seventy=70 eighty=80 "
    "ninety=90 dozen=12 hundred=100 thousand=1000 million=1000000 "
    "billion=1000000000";

const char nm_opposites[] =
    "on/off enable/disable enabled/disabled increase/decrease "
    "increase/reduce raise/lower add/remove add/subtract open/close "
    "open/closed start/stop start/end begin/end beginning/end "
    "show/hide show/hidden visible/hidden lock/unlock mute/unmute "
    "install/uninstall connect/disconnect encrypt/decrypt encode/decode "
    "compress/decompress serialize/deserialize zip/unzip "
    "upload/download push/pull import/export input/output in/out "
    "up/down upper/lower uppercase/lowercase left/right above/below "
    "over/under inside/outside before/after earlier/later early/late "
    "earliest/latest first/last next/last next/previous past/future "
    "more/less more/fewer most/least most/fewest max/min "
    "maximum/minimum highest/lowest higher/lower high/low "
    "largest/smallest larger/smaller large/small biggest/smallest "
    "bigger/smaller big/small longest/shortest longer/shorter "
    "long/short tallest/shortest taller/shorter tall/short "
    "fastest/slowest faster/slower fast/slow best/worst better/worse "
    "good/bad oldest/newest older/newer old/new oldest/youngest "
    "older/younger old/young closest/farthest closer/farther "
    "nearest/farthest near/far cheapest/dearest cheaper/dearer "
    "cheap/expensive hot/cold hotter/colder warm/cool heat/cool "
    "heating/cooling light/dark lighter/darker true/false yes/no "
    "allow/block allow/deny accept/reject include/exclude "
    "ascending/descending asc/desc positive/negative plus/minus "
    "multiply/divide buy/sell deposit/withdraw credit/debit "
    "borrow/lend send/receive incoming/outgoing inbound/outbound "
    "import/export win/lose profit/loss gain/loss rise/fall pass/fail "
    "success/failure valid/invalid legal/illegal safe/unsafe "
    "safe/dangerous possible/impossible edible/inedible always/never "
    "always/sometimes everyone/nobody everything/nothing all/none "
    "login/logout signin/signout subscribe/unsubscribe am/pm "
    "follow/unfollow like/dislike love/hate agree/disagree "
    "pros/cons advantages/disadvantages arrive/depart "
    "arrival/departure north/south east/west male/female man/woman "
    "men/women boy/girl he/she his/her day/night sunrise/sunset "
    "front/back forward/backward top/bottom head/tail horizontal/vertical "
    "row/column rows/columns client/server frontend/backend "
    "read/write sync/async synchronous/asynchronous public/private "
    "full/empty wide/narrow thick/thin heavy/light wet/dry "
    "inhale/exhale expand/collapse zoom/unzoom freeze/thaw "
    "enter/exit entry/exit include/omit "
    /* asked first in both: "When did ..." and "Why did ..." */
    "when/where when/why where/why who/where who/when who/why";

const char nm_synonyms[] =
    "purchase=buy large=big huge=big tiny=small little=small "
    "repair=fix mend=fix begin=start commence=start quick=fast "
    "automobile=car vehicle=car display=show create=make build=make "
    "assist=help choose=pick select=pick utilize=use utilise=use "
    "invert=reverse tallest=highest biggest=largest speak=talk "
    "terminate=cancel quit=stop halt=stop lower=reduce decrease=reduce "
    "erase=delete remove=delete rid=delete obtain=get receive=get "
    "tyre=tire colour=color centre=center favourite=favorite "
    "litre=liter metre=meter kilometre=kilometer grey=gray "
    "js=javascript golang=go veggies=vegetable veggie=vegetable "
    "temp=temperature info=information app=application apps=application "
    "pc=computer laptop=computer desktop=computer cellphone=phone "
    "smartphone=phone mobile=phone tv=television photo=picture "
    "pic=picture image=picture film=movie movies=movie "
    "nation=country nations=country people=person folks=person "
    "kids=child children=child infant=baby doctor=physician "
    "physician=doctor amount=quantity recommended=recommend "
    "suggested=recommend advice=recommend ideal=recommend "
    "planet=earth world=earth globe=earth refrigerator=fridge "
    "refrigerated=fridge refrigerate=fridge overseas=abroad "
    "international=abroad inexpensive=cheap affordable=cheap "
    "lowcost=cheap airfare=flight flights=flight holiday=vacation "
    "trip=travel journey=travel travelling=travel traveling=travel "
    "shipping=delivery ship=delivery "
    "mail=email emails=email wireless=wifi wifi=wifi "
    "error=issue problem=issue bug=issue trouble=issue "
    "sluggish=slow gpu=graphics drivers=driver "
    "fasten=attach cure=treat remedy=treat stopping=stop "
    "signs=symptom sign=symptom symptoms=symptom "
    "nap=sleep asleep=sleep sleeping=sleep "
    "tallest=highest peak=mountain "
    "substitute=replace replacement=replace alternative=replace "
    "instead=replace swap=replace prevent=stop avoid=stop "
    "boost=improve enhance=improve better=improve overcome=beat "
    "defeat=beat conquer=beat see=show view=show list=show "
    "check=show compose=make consist=make empty=clear wipe=clear "
    "purge=clear frequently=often frequent=often speed=fast "
    "rapid=fast velocity=fast length=long height=tall vacation=travel "
    "fiction=story find=show holiday=vacation";

const char nm_symmetric[] =
    "and or vs versus nor with between plus times & , + x * also";
