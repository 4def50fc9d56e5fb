"""report.html: one self-contained page (inline CSS, SVG drawn by inline JS, no network).

:func:`render_html` takes the replay's report document (``{"replay": ReplayStats, "pipeline":
PipelineReport.to_dict(), "flow": FlowStats.to_dict()}``) and embeds a compact chart model as
JSON; the page's script draws three charts as SVG:

* program flow: a two-column Sankey, every ``from -> to`` program change as a band whose width
  is the number of transitions (``(new)`` is a lead's first routing);
* contribution rate per program and ICP tier, nurtured against holdout (summed over cohorts:
  converted entries / entries), with entries and opportunities on hover;
* time-to-opportunity histograms per program (days from entry to the first opportunity);
* per email template and tier, conversion of receivers against non-receivers;
* nurtured against holdout per program and tier: the rate difference with its 95% interval as
  a whisker (``lift-ci``), the relative lift, the sample sizes, or "not enough data"
  (``lift-nodata``), from the document's ``lift`` rows (:func:`stream.report.stats.lift_rows`).

The output is deterministic (no timestamps), so replay stays byte-identical. Drawn elements carry
the classes ``flow-band``, ``rate-bar``, ``tto-bar`` and ``template-bar``; the headless-browser
test counts them.
"""

from __future__ import annotations

import html
from typing import Any

import orjson

from stream.report.postsale import postsale_html
from topics.outputs import PROGRAMS

PROGRAM_ORDER = ("(new)", *PROGRAMS)
TIER_ORDER = ("high", "medium", "out", "unknown")
MIN_RECEIVERS = 10  # template rows with fewer receivers are left out of the chart


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


def contribution_rows(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per program x tier x group: entries and opportunities summed over cohorts."""
    sums: dict[tuple[str, str, str], list[int]] = {}
    for program, cohorts in pipeline.get("programs", {}).items():
        for tiers in cohorts.values():
            for tier, groups in tiers.items():
                for group in ("nurtured", "holdout"):
                    cell = groups.get(group) or {}
                    acc = sums.setdefault((program, tier, group), [0, 0])
                    acc[0] += int(cell.get("entries") or 0)
                    acc[1] += int(cell.get("opportunities") or 0)
    rows = []
    for (program, tier, group), (entries, opps) in sorted(
        sums.items(), key=lambda kv: (_rank(kv[0][0], PROGRAM_ORDER), _rank(kv[0][1], TIER_ORDER))
    ):
        rows.append(
            {
                "program": program,
                "tier": tier,
                "group": group,
                "entries": entries,
                "opportunities": opps,
                "rate": round(opps / entries, 4) if entries else None,
            }
        )
    return rows


def template_rows(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per program x email template x tier: conversion of receivers against non-receivers."""
    rows = []
    templates = pipeline.get("templates", {})
    for program in sorted(templates, key=lambda p: _rank(p, PROGRAM_ORDER)):
        for template in sorted(templates[program]):
            tiers = templates[program][template]
            for tier in sorted(tiers, key=lambda t: _rank(t, TIER_ORDER)):
                cell = tiers[tier]
                if (cell.get("receivers") or 0) < MIN_RECEIVERS:
                    continue  # too few leads to read a rate from
                rows.append(
                    {
                        "program": program,
                        "template": template,
                        "tier": tier,
                        "receivers": cell.get("receivers", 0),
                        "receivers_rate": cell.get("receivers_rate"),
                        "non_receivers": cell.get("non_receivers", 0),
                        "non_receivers_rate": cell.get("non_receivers_rate"),
                    }
                )
    return rows


def chart_model(doc: dict[str, Any]) -> dict[str, Any]:
    flow = doc.get("flow", {})
    tto: dict[str, Any] = {}
    for key, counts in flow.get("time_to_opportunity", {}).items():
        program, _, group = key.partition("|")
        tto.setdefault(program, {})[group] = counts
    return {
        "summary": doc.get("replay", {}),
        "flows": flow.get("flows", []),
        "order": list(PROGRAM_ORDER),
        "rates": contribution_rows(doc.get("pipeline", {})),
        "templates": template_rows(doc.get("pipeline", {})),
        "tto_edges": flow.get("tto_edges_days", []),
        "tto": {p: tto[p] for p in sorted(tto, key=lambda p: _rank(p, PROGRAM_ORDER))},
        "lift": doc.get("lift", []),
    }


def render_html(doc: dict[str, Any], title: str = "nurture-stream replay report") -> str:
    data = orjson.dumps(chart_model(doc), option=orjson.OPT_SORT_KEYS).decode()
    data = data.replace("</", "<\\/")
    page = _PAGE.replace("@@TITLE@@", html.escape(title)).replace("@@DATA@@", data)
    return page.replace("</main>", postsale_html(doc.get("post_sale")) + "</main>", 1)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;
background:#f6f7fb}
header{background:#1d2433;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#b8c0d4}
main{max-width:1180px;margin:0 auto;padding:18px 24px 40px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0001;
min-width:110px}
.card b{display:block;font-size:20px}
.card span{color:#667;font-size:12px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px #0002;margin:0 0 20px;
padding:16px 20px}
section h2{margin:0 0 4px;font-size:16px}
section p.note{margin:0 0 10px;color:#667;font-size:12.5px}
svg text{font-size:11.5px;fill:#1d2433}
.flow-band{fill-opacity:.35;transition:fill-opacity .15s}
.flow-band:hover{fill-opacity:.75}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;
vertical-align:-1px}
#tip{position:fixed;pointer-events:none;background:#1d2433;color:#fff;padding:5px 8px;
border-radius:5px;font-size:12px;display:none;white-space:pre}
.small{display:flex;flex-wrap:wrap;gap:16px}
.empty{color:#889;font-style:italic}
</style></head>
<body>
<header><h1>@@TITLE@@</h1>
<p>Pipeline contribution per program and ICP tier, nurtured against holdout. Never blended.</p>
</header>
<main>
<div class="cards" id="cards"></div>
<section><h2>Program flow</h2>
<p class="note">Every change of program: left, where leads came from ((new) = first routing);
right, where they went. Band width = transitions. Hover a band for its count.</p>
<div id="flow"></div></section>
<section><h2>Contribution rate per program and ICP tier</h2>
<p class="note">Share of entries that reached a sales-accepted opportunity, summed over entry
cohorts. Nurtured (solid) against holdout (pale), per tier.</p>
<div class="legend"><span><i style="background:#3461d1"></i>nurtured</span>
<span><i style="background:#a9bbe8"></i>holdout</span></div>
<div id="rates"></div></section>
<section><h2>Nurtured against holdout: how sure is the difference?</h2>
<p class="note">Per program and ICP tier, summed over cohorts: contribution rate of nurtured
minus holdout entries, in points, with its 95% interval (the whisker; the dot is the estimate),
and the relative lift with its interval. An interval that crosses 0 is not significant: the
difference may be noise. A group below the rules' minimum size shows "not enough data".</p>
<div id="lift"></div></section>
<section><h2>Time to opportunity</h2>
<p class="note">Days from entering a program to the lead's first opportunity, per program:
share of each group's converted entries per bucket (so nurtured and holdout compare).</p>
<div class="legend"><span><i style="background:#2a9d6f"></i>nurtured</span>
<span><i style="background:#b4dcc9"></i>holdout</span></div>
<div class="small" id="tto"></div></section>
<section><h2>Emails that go with conversion</h2>
<p class="note">Per email template and ICP tier: share of leads sent it that reached an
opportunity within the window, against nurtured leads of the same program who were not sent it.
Association, not proof of cause. Rows with fewer than 10 receivers are left out.</p>
<div class="legend"><span><i style="background:#d1344b"></i>sent the email</span>
<span><i style="background:#f0b3bd"></i>not sent</span></div>
<div id="templates"></div></section>
</main>
<div id="tip"></div>
<script id="data" type="application/json">@@DATA@@</script>
<script>
(function(){
"use strict";
var D=JSON.parse(document.getElementById("data").textContent);
var NS="http://www.w3.org/2000/svg";
var COLORS={"(new)":"#8a93a6",prospect:"#c9b458",low_touch:"#b0b7c3",
mql_nurture:"#3461d1",trial_nurture:"#7b4fd6",
re_engagement:"#e08a2c",expansion_nurture:"#2a9d6f",sales:"#d1344b",customer:"#1f8a9e",
csm:"#0f6d55",inactive:"#6b6b6b",unsubscribed:"#444"};
function color(p){return COLORS[p]||"#999";}
function el(name,attrs,parent){var e=document.createElementNS(NS,name);
for(var k in attrs){e.setAttribute(k,attrs[k]);}if(parent){parent.appendChild(e);}return e;}
function text(parent,x,y,s,anchor,extra){var t=el("text",Object.assign({x:x,y:y,
"text-anchor":anchor||"start"},extra||{}),parent);t.textContent=s;return t;}
var tip=document.getElementById("tip");
function hover(node,label){node.addEventListener("mousemove",function(ev){tip.textContent=label;
tip.style.display="block";tip.style.left=(ev.clientX+12)+"px";tip.style.top=(ev.clientY+12)+"px";});
node.addEventListener("mouseleave",function(){tip.style.display="none";});
var t=el("title",{},node);t.textContent=label;}
function fmt(n){return Number(n).toLocaleString("en-US");}
function pct(r){return r===null||r===undefined?"n/a":(100*r).toFixed(1)+"%";}
function empty(id,msg){var d=document.getElementById(id);d.innerHTML="";
var p=document.createElement("p");p.className="empty";p.textContent=msg;d.appendChild(p);}

function cards(){var s=D.summary||{};var items=[["events",s.events],["leads",s.leads],
["transitions",s.transitions],["actions",s.actions],["timers fired",s.timers_fired],
["dead-lettered",s.dead_letters],["late events",s.late_events]];
var box=document.getElementById("cards");items.forEach(function(it){
var c=document.createElement("div");c.className="card";var b=document.createElement("b");
b.textContent=it[1]===undefined||it[1]===null?"-":fmt(it[1]);var sp=document.createElement("span");
sp.textContent=it[0];c.appendChild(b);c.appendChild(sp);box.appendChild(c);});
if(s.first_event_at){var c=document.createElement("div");c.className="card";
c.innerHTML="<b style='font-size:13px'></b><span>event time</span>";
c.firstChild.textContent=s.first_event_at+" \\u2192 "+s.until;box.appendChild(c);}}

function rank(p){var i=D.order.indexOf(p);return i<0?D.order.length:i;}
function flowChart(){var flows=D.flows||[];
if(!flows.length){empty("flow","No transitions.");return;}
var left={},right={},total=0;flows.forEach(function(f){left[f.from]=(left[f.from]||0)+f.count;
right[f.to]=(right[f.to]||0)+f.count;total+=f.count;});
var W=1080,H=Math.max(320,40+Object.keys(left).length*34,40+Object.keys(right).length*34);
var gap=10,nodeW=14,x0=170,x1=W-190;
function layout(side){var names=Object.keys(side).sort(function(a,b){return rank(a)-rank(b)||
(a<b?-1:1);});var avail=H-40-gap*(names.length-1);var y=20,pos={};names.forEach(function(n){
var h=Math.max(2,avail*side[n]/total);pos[n]={y:y,h:h,used:0};y+=h+gap;});return pos;}
var L=layout(left),R=layout(right);
var svg=el("svg",{width:W,height:H,viewBox:"0 0 "+W+" "+H,role:"img"},null);
var sorted=flows.slice().sort(function(a,b){
return rank(a.from)-rank(b.from)||rank(a.to)-rank(b.to);});
sorted.forEach(function(f){var a=L[f.from],b=R[f.to];var ha=a.h*f.count/left[f.from];
var hb=b.h*f.count/right[f.to];var ya=a.y+a.used,yb=b.y+b.used;a.used+=ha;b.used+=hb;
var xa=x0+nodeW,xb=x1,mx=(xa+xb)/2;
var d="M"+xa+","+ya+" C"+mx+","+ya+" "+mx+","+yb+" "+xb+","+yb+" L"+xb+","+(yb+hb)+
" C"+mx+","+(yb+hb)+" "+mx+","+(ya+ha)+" "+xa+","+(ya+ha)+" Z";
var p=el("path",{d:d,"class":"flow-band",fill:color(f.to)},svg);
hover(p,f.from+" \\u2192 "+f.to+": "+fmt(f.count));});
[[L,x0,left,"end",-6],[R,x1,right,"start",nodeW+6]].forEach(function(s){
Object.keys(s[0]).forEach(function(n){var r=s[0][n];
el("rect",{x:s[1],y:r.y,width:nodeW,height:r.h,fill:color(n),"class":"flow-node"},svg);
text(svg,s[1]+s[4],r.y+r.h/2+4,n+"  "+fmt(s[2][n]),s[3]);});});
document.getElementById("flow").appendChild(svg);}

function rateChart(){var rows=(D.rates||[]).filter(function(r){return r.entries>0;});
if(!rows.length){empty("rates","No program entries.");return;}
var groups={},programs=[];rows.forEach(function(r){var k=r.program+"|"+r.tier;
if(!groups[k]){groups[k]={program:r.program,tier:r.tier};}groups[k][r.group]=r;
if(programs.indexOf(r.program)<0){programs.push(r.program);}});
var keys=Object.keys(groups);var max=0;rows.forEach(function(r){if(r.rate>max){max=r.rate;}});
max=Math.max(0.05,Math.ceil(max*20)/20);
var bw=18,inner=4,slot=2*bw+inner+22,pg=34,left=50,top=20,ch=240;
var W=left+keys.length*slot+programs.length*pg+20,H=top+ch+60;
var svg=el("svg",{width:Math.max(W,600),height:H,role:"img"},null);
for(var i=0;i<=4;i++){var v=max*i/4,y=top+ch-ch*v/max;
el("line",{x1:left,x2:W,y1:y,y2:y,stroke:"#e3e6ee"},svg);text(svg,left-6,y+4,pct(v),"end");}
var x=left+10,prev=null;keys.forEach(function(k){var g=groups[k];
if(prev!==null&&prev!==g.program){x+=pg;}
if(prev!==g.program){text(svg,x,H-12,g.program,"start",{"font-weight":"600"});}prev=g.program;
["nurtured","holdout"].forEach(function(grp,j){var r=g[grp];var rate=r&&r.rate!==null?r.rate:0;
var h=ch*rate/max;var bx=x+j*(bw+inner);
var bar=el("rect",{x:bx,y:top+ch-h,width:bw,height:Math.max(h,0.5),rx:2,
fill:grp==="nurtured"?"#3461d1":"#a9bbe8","class":"rate-bar"},svg);
hover(bar,g.program+" / "+g.tier+" / "+grp+"\\nrate "+pct(r?r.rate:null)+"\\nentries "+
fmt(r?r.entries:0)+", opportunities "+fmt(r?r.opportunities:0));
if(r&&r.entries){text(svg,bx+bw/2,top+ch-h-4,(100*rate).toFixed(0),"middle",
{"font-size":"9.5px"});}});
text(svg,x+bw+inner/2,top+ch+16,g.tier,"middle");x+=slot;});
document.getElementById("rates").appendChild(svg);}

function ttoChart(){var progs=Object.keys(D.tto||{});var edges=D.tto_edges||[];
if(!progs.length){empty("tto","No opportunities after a program entry.");return;}
progs.forEach(function(p){var g=D.tto[p];var n=g.nurtured||[],h=g.holdout||[];
var W=360,H=206,left=34,top=32,ch=130,bw=(W-left-10)/edges.length;
var sn=n.reduce(function(a,b){return a+b;},0),sh=h.reduce(function(a,b){return a+b;},0);
var max=0.01;edges.forEach(function(_,i){max=Math.max(max,sn?(n[i]||0)/sn:0,sh?(h[i]||0)/sh:0);});
var svg=el("svg",{width:W,height:H,role:"img"},null);
text(svg,left,14,p+" (nurtured "+fmt(sn)+", holdout "+fmt(sh)+")","start",{"font-weight":"600"});
el("line",{x1:left,x2:W-10,y1:top+ch,y2:top+ch,stroke:"#aab"},svg);
edges.forEach(function(e,i){[["nurtured",n[i]||0,"#2a9d6f",0,sn],["holdout",h[i]||0,"#b4dcc9",1,sh]]
.forEach(function(s){if(!s[1]){return;}var share=s[1]/s[4];var bh=ch*share/max;
var bx=left+i*bw+1+s[3]*(bw-2)/2;
var r=el("rect",{x:bx,y:top+ch-bh,width:(bw-2)/2,height:bh,fill:s[2],"class":"tto-bar"},svg);
var hi=i+1<edges.length?edges[i+1]:null;hover(r,p+" / "+s[0]+": "+fmt(s[1])+" ("+pct(share)+
") in "+e+(hi===null?"+ days":"-"+hi+" days"));});
if(i%2===0){text(svg,left+i*bw+bw/2,top+ch+14,String(e),"middle",{"font-size":"10px"});}});
text(svg,left+(W-left)/2,H-8,"days to opportunity","middle",{"font-size":"10.5px"});
document.getElementById("tto").appendChild(svg);});}

function templateChart(){var rows=D.templates||[];
if(!rows.length){empty("templates","No email sends.");return;}
var max=0.05;rows.forEach(function(r){max=Math.max(max,r.receivers_rate||0,
r.non_receivers_rate||0);});
var rowH=30,left=330,W=1000,barW=W-left-120,H=rows.length*rowH+20;
var svg=el("svg",{width:W,height:H,role:"img"},null);
rows.forEach(function(r,i){var y=10+i*rowH;
text(svg,left-8,y+15,r.template.replace(r.program+".","")+" \u00b7 "+r.tier+"  ("+
r.program+")","end");
[["sent",r.receivers_rate,r.receivers,"#d1344b",0],["not sent",r.non_receivers_rate,
r.non_receivers,"#f0b3bd",1]].forEach(function(s){var w=barW*(s[1]||0)/max;
var b=el("rect",{x:left,y:y+s[4]*12,width:Math.max(w,0.5),height:11,fill:s[3],
"class":"template-bar"},svg);
hover(b,r.template+" / "+r.tier+" / "+s[0]+": "+pct(s[1])+" of "+fmt(s[2])+" leads");
text(svg,left+Math.max(w,0.5)+5,y+s[4]*12+9,pct(s[1])+" of "+fmt(s[2]),"start",
{"font-size":"10px"});});});
document.getElementById("templates").appendChild(svg);}

function pts(x){return (x>=0?"+":"")+(100*x).toFixed(1);}
function liftChart(){var rows=D.lift||[];
if(!rows.length){empty("lift","No program entries.");return;}
var span=0.05;rows.forEach(function(r){if(r.difference){span=Math.max(span,
Math.abs(r.difference.low),Math.abs(r.difference.high));}});
var rowH=26,left=190,axis=300,W=1120,H=rows.length*rowH+34,x0=left+axis/2;
function X(v){return x0+axis/2*v/span;}
var svg=el("svg",{width:W,height:H,role:"img"},null);
el("line",{x1:x0,x2:x0,y1:4,y2:H-26,stroke:"#667","stroke-dasharray":"3,3"},svg);
[-span,0,span].forEach(function(v){text(svg,X(v),H-10,pts(v)+" pt","middle",
{"font-size":"10px"});});
rows.forEach(function(r,i){var y=14+i*rowH;
text(svg,left-10,y+4,r.program+" \u00b7 "+r.tier,"end");
var n="n "+fmt(r.treated_entries)+" / "+fmt(r.control_entries);
if(!r.difference){var t=text(svg,left+axis+16,y+4,"not enough data ("+n+"; "+
fmt(r.min_group_entries)+" each needed)","start",{"class":"lift-nodata",fill:"#889"});
return;}
var d=r.difference,rl=r.relative_lift,sig=r.status==="significant";
var ci=el("line",{x1:X(d.low),x2:X(d.high),y1:y,y2:y,stroke:"#e4572e","stroke-width":4,
"shape-rendering":"crispEdges","class":"lift-ci","data-low":d.low,"data-high":d.high},svg);
[d.low,d.high].forEach(function(v){el("line",{x1:X(v),x2:X(v),y1:y-6,y2:y+6,stroke:"#e4572e",
"stroke-width":2,"shape-rendering":"crispEdges"},svg);});
el("circle",{cx:X(d.estimate),cy:y,r:4,fill:"#1d2433","class":"lift-point"},svg);
var rel=rl&&rl.estimate!==null?pts(rl.estimate)+"%":"n/a";
var label=pts(d.estimate)+" pt ["+pts(d.low)+", "+pts(d.high)+"] \u00b7 relative "+rel+
" ["+pts(rl.low)+"%, "+pts(rl.high)+"%] \u00b7 "+n+" \u00b7 "+(sig?"significant":
"not significant");
text(svg,left+axis+16,y+4,label,"start",{"class":"lift-label","font-weight":sig?"600":"400"});
hover(ci,r.program+" / "+r.tier+": "+label);});
document.getElementById("lift").appendChild(svg);}

cards();flowChart();rateChart();liftChart();ttoChart();templateChart();
document.body.setAttribute("data-rendered","yes");
})();
</script>
</body></html>
"""
